"""Soak: an office box runs all day. Does `captionbot serve` leak, drift or drop?

A fresh `captionbot serve` process takes `--sessions` sessions that each play the long English
recordings (looped) for `--minutes` of audio, `--speed` times faster than real time (where the
engine keeps up). Every 10 s the RSS of the service (all its processes) is sampled; at the end
it prints memory at each quarter of the run and commit latency per 10 minutes of audio, plus
the audio dropped. Latency is in audio seconds (wall seconds × speed), so it is comparable
across the run, not with a real-time run.

`--waves W` runs the sessions W times one after another, with `--idle` seconds of no sessions
between waves (the service trims its heap every minute): whether memory comes back when
sessions end, and whether a day of meetings that start and stop keeps the service flat.

    python bench/serve_soak.py                                    # 4 sessions × 30 min = 2 h
    python bench/serve_soak.py --sessions 2 --minutes 4 --speed 2 # a short check
    python bench/serve_soak.py --waves 4 --minutes 5              # meetings that end
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


async def soak(
    args: argparse.Namespace, url: str, pid: int
) -> tuple[dict, list, list[tuple[float, float, float]]]:
    """Every session's results, the RSS samples, and per wave the RSS before it, its peak, and
    after the idle time that follows it."""
    long_audio = load_long_audio()
    length = int(args.minutes * 60 * 16000)
    looped = np.resize(long_audio, length + len(long_audio))
    out: dict = {}
    memory: list[tuple[float, float]] = []
    waves: list[tuple[float, float, float]] = []
    started = time.monotonic()

    async def sample() -> None:
        while True:
            memory.append((time.monotonic() - started, tree_rss_mb(pid)))
            await asyncio.sleep(SAMPLE_EVERY_S)

    sampler = asyncio.ensure_future(sample())
    stride = len(long_audio) // max(args.sessions, 1)
    for wave in range(args.waves):
        before = tree_rss_mb(pid)
        wave_start = time.monotonic() - started
        await asyncio.gather(
            *(
                session(
                    url,
                    f"soak{wave}-{i}" if args.waves > 1 else f"soak{i}",
                    looped[i * stride : i * stride + length],
                    out,
                    args.speed,
                )
                for i in range(args.sessions)
            )
        )
        refused = {name: r["refused"] for name, r in out.items() if "refused" in r}
        if refused:
            raise SystemExit(f"sessions refused: {refused}")
        if args.waves > 1:
            await asyncio.sleep(args.idle)
        peak = max(rss for t, rss in memory if t >= wave_start) if memory else before
        waves.append((before, peak, tree_rss_mb(pid)))
    sampler.cancel()
    memory.append((time.monotonic() - started, tree_rss_mb(pid)))
    return out, memory, waves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--engine", help="auto (default), ctranslate2 or jax")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=30.0, help="audio per session (30)")
    parser.add_argument("--speed", type=float, default=2.0, help="× real time (2)")
    parser.add_argument("--waves", type=int, default=1, help="the sessions, W times over (1)")
    parser.add_argument(
        "--idle", type=float, default=75.0, help="seconds without sessions after each wave (75)"
    )
    args = parser.parse_args()
    args.ray = False
    process, url = start_service(args, args.model, args.sessions)
    try:
        out, memory, waves = asyncio.run(soak(args, url, process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    total_audio_h = args.waves * args.sessions * args.minutes / 60
    times = f"{args.waves} waves of " if args.waves > 1 else ""
    print(f"{times}{args.sessions} sessions × {args.minutes:g} min = {total_audio_h:.2f} h of "
          f"audio, {args.model}, {args.speed:g}× real time")  # fmt: skip
    if args.waves > 1:
        print(f"\nmemory per wave (RSS MB; 'after': {args.idle:g} s after its sessions ended)")
        print(f"{'wave':>5} {'before':>8} {'peak':>8} {'after':>8} {'p50 s':>7} {'p90 s':>7}")
        for wave, (before, peak, after) in enumerate(waves):
            lat = [
                p[1] for n, r in out.items() if n.startswith(f"soak{wave}-") for p in r["latencies"]
            ]
            print(f"{wave + 1:>5} {before:8.0f} {peak:8.0f} {after:8.0f} "
                  f"{np.percentile(lat, 50):7.2f} {np.percentile(lat, 90):7.2f}")  # fmt: skip
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
