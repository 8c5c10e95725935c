"""Streaming vs offline on long-form speech: WER, word latency, drift, speed and memory.

Each system runs in its own fresh process (so peak RSS is its own), one after the other on the
same machine in the same run: the streaming system with audio paced in real time and
computation counted (as a live meeting), and offline whole-file transcription by the same
engine and model (faster-whisper, beam 5) as the reference line.

    python bench/streaming_latency.py                     # the long English files, base
    python bench/streaming_latency.py --items fw_jfk --mode fast --model tiny.en
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
LONG_ENGLISH = ["ljspeech_LJ001-0001_0045_long", "ljspeech_LJ001-0140_0186_long"]


def _streaming_run(item: dict, audio_path: str, args: dict, queue: multiprocessing.Queue) -> None:
    from bot.asr.factory import create_engine
    from bot.audio.decode import load_audio
    from bot.config import load_config
    from bot.eval.latency import (
        commit_latencies,
        first_seen_latencies,
        latency_over_time,
        summarize,
    )
    from bot.messages import SAMPLE_RATE
    from bot.outputs.transcript import TranscriptRecorder
    from bot.streaming.feeding import Recording, run_fast, run_realtime
    from bot.streaming.transcriber import StreamingTranscriber

    overrides = {"engine.model": args["model"]}
    if args["audio_context"]:
        overrides["engine.audio_context"] = args["audio_context"]
    config = load_config(args["config"], overrides)
    engine = create_engine(config.engine)
    audio = load_audio(audio_path)
    realtime = args["mode"] == "realtime"
    transcriber = StreamingTranscriber(
        engine, config.streaming.options(), clock="wall" if realtime else "audio"
    )
    recorder = TranscriptRecorder(
        "s",
        item["id"],
        len(audio) / SAMPLE_RATE,
        engine.info.model,
        engine.info.name,
        "transcribe",
        item["language"],
    )
    started = time.perf_counter()
    (run_realtime if realtime else run_fast)(
        transcriber, [Recording("s", audio, "transcribe", item["language"])], recorder.add
    )
    wall = time.perf_counter() - started
    words = recorder.transcript.words
    commit = commit_latencies(words)
    queue.put(
        {
            "text": recorder.transcript.text,
            "commit": summarize(words, commit).as_dict(),
            "first_seen": summarize(words, first_seen_latencies(words)).as_dict(),
            "per_minute": latency_over_time(words, commit),
            "decode_s": transcriber.decode_s,
            "rounds": transcriber.rounds,
            "wall_s": wall,
            "stats": transcriber.stats("s").__dict__,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _offline_run(item: dict, audio_path: str, args: dict, queue: multiprocessing.Queue) -> None:
    from bot.asr.factory import create_engine
    from bot.audio.decode import load_audio
    from bot.config import load_config

    config = load_config(args["config"], {"engine.model": args["model"]})
    engine = create_engine(config.engine)
    audio = load_audio(audio_path)
    started = time.perf_counter()
    result = engine.transcribe_offline(audio, "transcribe", item["language"], beam_size=5)
    wall = time.perf_counter() - started
    queue.put(
        {
            "text": result.text,
            "decode_s": wall,
            "wall_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _in_fresh_process(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", default=LONG_ENGLISH, help="manifest ids")
    parser.add_argument("--model", default="base")
    parser.add_argument("--mode", choices=["realtime", "fast"], default="realtime")
    parser.add_argument(
        "--audio-context",
        choices=["trimmed", "full"],
        help="engine.audio_context (default: the config's, else trimmed)",
    )
    parser.add_argument("--config", type=Path, help="YAML config for the streaming system")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline reference")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (DATA_DIR / "manifest.jsonl").is_file():
        print(f"speech data not found at {DATA_DIR}", file=sys.stderr)
        return 2

    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    manifest = {}
    for line in (DATA_DIR / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        manifest[row["id"]] = row
    settings = {
        "model": args.model,
        "mode": args.mode,
        "audio_context": args.audio_context,
        "config": args.config,
    }
    rows, results = [], {}
    for item_id in args.items:
        item = manifest[item_id]
        audio_path = str(DATA_DIR / item["audio"])
        normalize = EnglishTextNormalizer() if item["language"] == "en" else BasicTextNormalizer()
        reference = normalize(item["text"])
        print(f"{item_id} ({item['duration_s']:.0f} s): streaming, {args.mode}...", file=sys.stderr)
        streaming = _in_fresh_process(_streaming_run, item, audio_path, settings)
        streaming["wer"] = jiwer.wer(reference, normalize(streaming["text"]))
        results[item_id] = {"streaming": streaming}
        systems = [("streaming " + args.mode, streaming)]
        if not args.no_offline:
            print(f"{item_id}: offline reference...", file=sys.stderr)
            offline = _in_fresh_process(_offline_run, item, audio_path, settings)
            offline["wer"] = jiwer.wer(reference, normalize(offline["text"]))
            results[item_id]["offline"] = offline
            systems.append(("offline beam 5", offline))
        for name, result in systems:
            commit = result.get("commit", {})
            seen = result.get("first_seen", {})
            rows.append(
                [
                    item_id,
                    name,
                    f"{100 * result['wer']:.2f}",
                    _s(commit.get("p50")),
                    _s(commit.get("p90")),
                    _s(commit.get("max")),
                    _s(commit.get("first_minute_p50")),
                    _s(commit.get("last_minute_p50")),
                    _s(seen.get("p50")),
                    _s(seen.get("p90")),
                    f"{result['decode_s'] / item['duration_s']:.3f}",
                    f"{result['peak_rss_mb']:.0f}",
                ]
            )
    header = [
        "item",
        "system",
        "WER %",
        "commit p50",
        "p90",
        "max",
        "1st min p50",
        "last min p50",
        "seen p50",
        "seen p90",
        "RTF",
        "peak RSS MB",
    ]
    print(
        f"\nmodel {args.model}, audio context {args.audio_context or 'from config'}; "
        "latency in seconds after the word ended; RTF = compute seconds per audio second"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for item_id, result in results.items():
        trend = ", ".join(
            f"{start / 60:.0f}:{median:.2f}"
            for start, median, _ in result["streaming"]["per_minute"]
        )
        print(f"{item_id}: commit latency median by minute (min:s) {trend}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"settings": {**settings, "config": str(args.config)}, "results": results},
                indent=1,
                default=str,
            )
        )
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
