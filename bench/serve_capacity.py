"""Live sessions per box: N concurrent real-time sessions on one `captionbot serve`.

For each model and each N, a fresh `captionbot serve` process (the real command, on loopback)
takes N clients that each play a different stretch of the long English recordings in real
time (100 ms frames on a fixed schedule). Per N it reports the commit latency of every word
as the client saw it (word received − when its end was sent), p50/p90, the drift (median
latency of the last third minus the first third: a session falling behind), and the audio the
service dropped. Capacity = the most sessions with p90 ≤ 2.0 s, drift ≤ 0.5 s and nothing
dropped.

    python bench/serve_capacity.py                               # tiny.en and base, 1..8
    python bench/serve_capacity.py --models tiny.en --sessions 1,2,4 --seconds 30
    python bench/serve_capacity.py --ray                          # the same on Ray Serve
    python bench/serve_capacity.py --engine jax --models base --sessions 16,32,64,96,128 \
        --one-service --config gpu.yaml                           # a GPU box (gpu.yaml:
                                                                  # streaming: {max_batch: 128})

With --one-service one service takes every count in turn (a GPU's compiled programs are paid
for once); besides the client-side figures each row then has the service's own: engine rounds
per second, mean batch and the share of the time the engine was busy (from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
LONG_ENGLISH = ["ljspeech_LJ001-0001_0045_long", "ljspeech_LJ001-0140_0186_long"]
FRAME = 1600
P90_TARGET_S = 2.0
DRIFT_LIMIT_S = 0.5


def load_long_audio(data_dir: Path = DATA_DIR) -> np.ndarray:
    """The long English recordings of `data_dir`'s manifest that are there, end to end."""
    sys.path.insert(0, str(REPO))
    from bot.audio.decode import load_audio

    rows = {
        row["id"]: row
        for row in map(json.loads, (data_dir / "manifest.jsonl").read_text().splitlines())
    }
    paths = [data_dir / rows[i]["audio"] for i in LONG_ENGLISH if i in rows]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise SystemExit(f"none of {', '.join(LONG_ENGLISH)} is in {data_dir}")
    return np.concatenate([_read(path, load_audio) for path in paths])


def _read(path: Path, load_audio) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV read directly (a GPU box may lack PyAV); anything else
    through captionbot's decoder."""
    import wave

    with wave.open(str(path)) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2):
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            return pcm.astype(np.float32) / 32768.0
    return load_audio(path)


def engine_counters(url: str) -> dict[str, float]:
    """The service's engine counters from /metrics: rounds, engine seconds, windows decoded."""
    metrics = url.replace("ws://", "http://").removesuffix("/ws") + "/metrics"
    with urllib.request.urlopen(metrics, timeout=10) as response:
        text = response.read().decode()
    counters = {"rounds": 0.0, "engine_s": 0.0, "windows": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == "captionbot_engine_rounds_total":
            counters["rounds"] = float(value)
        elif name == "captionbot_engine_seconds_total":
            counters["engine_s"] = float(value)
        elif name.startswith("captionbot_batch_size_total{"):
            size = float(re.search(r'size="(\d+)"', name).group(1))
            counters["windows"] += size * float(value)
    return counters


def start_service(
    args: argparse.Namespace, model: str, sessions: int
) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "bot", "serve", "--model", model, "--port", "0",
        "--max-sessions", str(sessions), "--task", "transcribe", "--language", "en",
        "--out", tempfile.mkdtemp(prefix="serve-bench-"),
    ]  # fmt: skip
    if args.engine:
        command += ["--engine", args.engine]
    if getattr(args, "config", None):
        command += ["--config", str(args.config)]
    if args.ray:
        command += ["--ray"]
    if args.service_log:
        command += ["-v"]
    log = open(args.service_log, "a") if args.service_log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    if args.service_log:
        log.close()  # the service holds its own copy
    line = process.stdout.readline()
    found = re.search(r"ws://\S+/ws", line)
    if not found:
        process.kill()
        raise SystemExit(f"captionbot serve did not start: {line!r}")
    return process, found.group(0)


async def session(url: str, name: str, audio: np.ndarray, result: dict, speed: float = 1.0) -> None:
    """Play `audio` to the service at `speed` × real time; result[name] holds each word's
    (audio end, commit latency in audio seconds) and the audio the service dropped."""
    import aiohttp

    latencies: list[tuple[float, float]] = []
    dropped = 0.0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        hello = {"type": "hello", "session": name, "language": "en", "task": "transcribe"}
        await ws.send_str(json.dumps(hello))
        reply = await ws.receive_json()
        if reply["type"] != "ready":
            result[name] = {"refused": reply}
            return
        started = time.monotonic()

        async def send() -> None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
            for sequence, offset in enumerate(range(0, len(pcm), FRAME)):
                due = started + offset / 16000 / speed
                await asyncio.sleep(max(due - time.monotonic(), 0))
                await ws.send_bytes(
                    struct.pack("<Q", sequence) + pcm[offset : offset + FRAME].tobytes()
                )
            await ws.send_str(json.dumps({"type": "end"}))

        sender = asyncio.ensure_future(send())
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            audio_now = (time.monotonic() - started) * speed
            if data["type"] == "update":
                latencies += [(w[2], audio_now - max(w[2], 0.0)) for w in data["words"]]
            elif data["type"] == "dropped":
                dropped = data["total_s"]
        await sender
    result[name] = {"latencies": latencies, "dropped": dropped}


async def run_sessions(url: str, count: int, audio: np.ndarray, seconds: float) -> dict:
    result: dict = {}
    length = int(seconds * 16000)
    stride = max((len(audio) - length) // max(count, 1), 16000)
    tasks = [
        session(url, f"s{i}", audio[(i * stride) % (len(audio) - length) :][:length], result)
        for i in range(count)
    ]
    await asyncio.gather(*tasks)
    return result


def summarize(result: dict, seconds: float) -> dict:
    refused = sum(1 for r in result.values() if "refused" in r)
    pairs = [p for r in result.values() for p in r.get("latencies", [])]
    if not pairs:
        return {"p50": float("nan"), "p90": float("nan"), "drift": float("nan"),
                "dropped": 0.0, "refused": refused, "words": 0}  # fmt: skip
    ends = np.array([p[0] for p in pairs])
    lat = np.array([p[1] for p in pairs])
    first = lat[ends < seconds / 3]
    last = lat[ends > 2 * seconds / 3]
    drift = float(np.median(last) - np.median(first)) if len(first) and len(last) else 0.0
    return {
        "p50": float(np.percentile(lat, 50)),
        "p90": float(np.percentile(lat, 90)),
        "drift": drift,
        "dropped": float(sum(r.get("dropped", 0.0) for r in result.values())),
        "refused": refused,
        "words": len(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny.en,base", help="names or model folders")
    parser.add_argument("--sessions", default="1,2,4,6,8")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per session (60)")
    parser.add_argument("--engine", help="auto (default), ctranslate2 or jax")
    parser.add_argument("--ray", action="store_true", help="serve --ray (the cluster extra)")
    parser.add_argument("--config", type=Path, help="a captionbot config for the service")
    parser.add_argument("--one-service", action="store_true", help="one service for every count")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the speech data folder")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--service-log", type=Path, help="append the service's log here")
    args = parser.parse_args()
    audio = load_long_audio(args.data)
    counts = list(map(int, args.sessions.split(",")))
    rows = []
    print(
        f"{'model':10} {'sessions':>8} {'p50 s':>7} {'p90 s':>7} {'drift s':>8} "
        f"{'dropped s':>9} {'words':>6} {'rounds/s':>8} {'batch':>6} {'busy':>5}  ok"
    )
    for model in args.models.split(","):
        label = Path(model).name if "/" in model else model
        capacity = 0
        shared = None
        if args.one_service:
            started = time.monotonic()
            shared = start_service(args, model, max(counts))
            print(f"{label}: service ready in {time.monotonic() - started:.0f} s", flush=True)
        try:
            for count in counts:
                process, url = shared or start_service(args, model, count)
                before = engine_counters(url)
                started = time.monotonic()
                try:
                    result = asyncio.run(run_sessions(url, count, audio, args.seconds))
                    after = engine_counters(url)
                finally:
                    if shared is None:
                        stop_service(process)
                wall = time.monotonic() - started
                row = summarize(result, args.seconds) | {"model": label, "sessions": count}
                rounds = after["rounds"] - before["rounds"]
                row |= {
                    "rounds_per_s": rounds / wall,
                    "mean_batch": (after["windows"] - before["windows"]) / max(rounds, 1),
                    "engine_busy": (after["engine_s"] - before["engine_s"]) / wall,
                }
                row["ok"] = bool(
                    row["p90"] <= P90_TARGET_S
                    and row["drift"] <= DRIFT_LIMIT_S
                    and row["dropped"] == 0
                    and row["refused"] == 0
                )
                if row["ok"] and capacity == count_before(args, count):
                    capacity = count
                rows.append(row)
                print(f"{label:10} {count:8d} {row['p50']:7.2f} {row['p90']:7.2f} "
                      f"{row['drift']:8.2f} {row['dropped']:9.1f} {row['words']:6d} "
                      f"{row['rounds_per_s']:8.2f} {row['mean_batch']:6.1f} "
                      f"{row['engine_busy']:5.2f}  {'yes' if row['ok'] else 'no'}",
                      flush=True)  # fmt: skip
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
        finally:
            if shared is not None:
                stop_service(shared[0])
        rule = f"p90 <= {P90_TARGET_S} s, drift <= {DRIFT_LIMIT_S} s, nothing dropped"
        print(f"{label}: capacity {capacity} real-time sessions ({rule})", flush=True)


def stop_service(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def count_before(args: argparse.Namespace, count: int) -> int:
    """The session count tried before `count` (0 for the first): capacity only grows while
    every smaller count passed."""
    counts = list(map(int, args.sessions.split(",")))
    index = counts.index(count)
    return counts[index - 1] if index else 0


if __name__ == "__main__":
    main()
