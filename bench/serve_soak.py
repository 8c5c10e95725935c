"""Soak: an office box runs all day. Does `captionbot serve` leak, drift or drop?

A fresh `captionbot serve` process takes `--sessions` sessions that each play the long English
recordings (looped) for `--minutes` of audio, `--speed` times faster than real time (where the
engine keeps up). Every 10 s the RSS of the service (all its processes) is sampled; at the end
it prints memory at each quarter of the run and commit latency per 10 minutes of audio, plus
the audio dropped. Latency is in audio seconds (wall seconds × speed), so it is comparable
across the run, not with a real-time run.

    python bench/serve_soak.py                                    # 4 sessions × 30 min = 2 h
    python bench/serve_soak.py --sessions 2 --minutes 4 --speed 2 # a short check
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
from serve_capacity import load_long_audio, session, start_service

BUCKET_S = 600.0
SAMPLE_EVERY_S = 10.0


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def soak(args: argparse.Namespace, url: str, pid: int) -> tuple[dict, list]:
    long_audio = load_long_audio()
    length = int(args.minutes * 60 * 16000)
    looped = np.resize(long_audio, length + len(long_audio))
    out: dict = {}
    memory: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample() -> None:
        while True:
            memory.append((time.monotonic() - started, tree_rss_mb(pid)))
            await asyncio.sleep(SAMPLE_EVERY_S)

    sampler = asyncio.ensure_future(sample())
    stride = len(long_audio) // max(args.sessions, 1)
    await asyncio.gather(
        *(
            session(url, f"soak{i}", looped[i * stride : i * stride + length], out, args.speed)
            for i in range(args.sessions)
        )
    )
    sampler.cancel()
    refused = {name: r["refused"] for name, r in out.items() if "refused" in r}
    if refused:
        raise SystemExit(f"sessions refused: {refused}")
    memory.append((time.monotonic() - started, tree_rss_mb(pid)))
    return out, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--engine", help="auto (default), ctranslate2 or jax")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=30.0, help="audio per session (30)")
    parser.add_argument("--speed", type=float, default=2.0, help="× real time (2)")
    args = parser.parse_args()
    args.ray = False
    process, url = start_service(args, args.model, args.sessions)
    try:
        out, memory = asyncio.run(soak(args, url, process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    total_audio_h = args.sessions * args.minutes / 60
    print(f"{args.sessions} sessions × {args.minutes:g} min = {total_audio_h:.2f} h of audio, "
          f"{args.model}, {args.speed:g}× real time")  # fmt: skip
    wall = memory[-1][0]
    print("\nmemory (RSS of the service, all processes)")
    print(f"{'quarter':>8} {'wall s':>8} {'RSS MB':>8}")
    for quarter in range(5):
        at = wall * quarter / 4
        t, rss = min(memory, key=lambda m: abs(m[0] - at))
        print(f"{quarter:>8} {t:8.0f} {rss:8.0f}")
    pairs = [p for r in out.values() for p in r["latencies"]]
    ends = np.array([p[0] for p in pairs])
    lat = np.array([p[1] for p in pairs])
    print("\ncommit latency per 10 min of audio (audio seconds)")
    print(f"{'minutes':>9} {'words':>6} {'p50 s':>7} {'p90 s':>7}")
    for start in np.arange(0, args.minutes * 60, BUCKET_S):
        inside = lat[(ends >= start) & (ends < start + BUCKET_S)]
        if len(inside):
            print(f"{start / 60:4.0f}-{(start + BUCKET_S) / 60:<4.0f} {len(inside):6d} "
                  f"{np.percentile(inside, 50):7.2f} {np.percentile(inside, 90):7.2f}")  # fmt: skip
    dropped = sum(r["dropped"] for r in out.values())
    print(f"\ndropped audio: {dropped:.1f} s; words: {len(lat)}")


if __name__ == "__main__":
    main()
