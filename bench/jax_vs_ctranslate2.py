"""JAX engine vs CTranslate2 engine, same model, same machine, same run; prints a table.

Every measurement runs in a fresh process: start-up (cold, then with the compile cache for
jax), streaming at real time (commit latency p50/p90, WER) over a long file, offline greedy RTF
and WER on it, throughput with 1/4/8 streams decoded as one batch, and peak RSS. A third
column runs the jax engine with the full 30 s audio context (no variable context), to show
what encoding only the buffer's length buys.

    python bench/jax_vs_ctranslate2.py [--model base] [--stream-seconds S] [--long ITEM]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LONG = "ljspeech_LJ001-0001_0045_long"


SYSTEMS = {
    "ctranslate2": ("ctranslate2", "trimmed"),
    "jax": ("jax", "trimmed"),
    "jax, 30 s context": ("jax", "full"),
}


def _engine(system: str, model: str):
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    name, context = SYSTEMS[system]
    return create_engine(EngineConfig(name=name, model=model, audio_context=context))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def startup(name: str, model: str, cache: str, out: multiprocessing.Queue) -> None:
    import numpy as np

    from bot.asr.engine import Window

    os.environ["CAPTIONBOT_JAX_CACHE"] = cache
    started = time.perf_counter()
    engine = _engine(name, model)
    loaded = time.perf_counter() - started
    audio = np.zeros(8 * 16000, np.float32)
    audio[16000:48000] = 0.1 * np.sin(np.arange(32000) / 5)
    engine.transcribe([Window(audio, "transcribe", "en")])
    out.put({"load_s": loaded, "first_result_s": time.perf_counter() - started})


def offline(name: str, model: str, item: dict, out: multiprocessing.Queue) -> None:
    from bot.audio.decode import load_audio
    from bot.eval.metrics import word_error

    engine = _engine(name, model)
    audio = load_audio(DATA / item["audio"])
    started = time.perf_counter()
    result = engine.transcribe_offline(audio, "transcribe", "en", beam_size=1)
    wall = time.perf_counter() - started
    out.put(
        {
            "rtf": wall / (len(audio) / 16000),
            "wer": word_error(item["text"], result.text, "en").rate,
            "rss": _rss_mb(),
        }
    )


def streaming(name: str, model: str, item: dict, seconds: float, out) -> None:
    import numpy as np

    from bot.audio.decode import load_audio
    from bot.eval.latency import commit_latencies, percentiles
    from bot.eval.metrics import word_error
    from bot.outputs.transcript import TranscriptRecorder
    from bot.streaming.feeding import Recording, run_realtime
    from bot.streaming.transcriber import StreamingTranscriber

    engine = _engine(name, model)
    audio = load_audio(DATA / item["audio"])
    seconds = min(seconds, len(audio) / 16000) if seconds > 0 else len(audio) / 16000
    audio = audio[: int(seconds * 16000)]
    transcriber = StreamingTranscriber(engine, clock="wall")
    recorder = TranscriptRecorder("s", item["id"], seconds, model, name, "transcribe", "en")
    run_realtime(transcriber, [Recording("s", audio, "transcribe", "en")], recorder.add)
    words = recorder.transcript.words
    latency = percentiles(np.array(commit_latencies(words)))
    # The dataset text cut in proportion to the excerpt: the same reference for both engines.
    text_words = item["text"].split()
    reference = " ".join(text_words[: round(len(text_words) * seconds / item["duration_s"])])
    out.put(
        {
            "seconds": seconds,
            "p50": latency.p50,
            "p90": latency.p90,
            "wer": word_error(reference, recorder.transcript.text, "en").rate,
            "rss": _rss_mb(),
        }
    )


def throughput(
    name: str, model: str, item: dict, batches: list[int], out: multiprocessing.Queue
) -> None:
    from bot.asr.engine import Window
    from bot.audio.decode import load_audio

    engine = _engine(name, model)
    audio = load_audio(DATA / item["audio"])
    result = {}
    for streams in batches:
        windows = [
            Window(audio[j * 160000 : j * 160000 + 160000], "transcribe", "en", "")
            for j in (i % (len(audio) // 160000) for i in range(streams))
        ]
        engine.transcribe(windows)  # compile / warm up this shape
        started = time.perf_counter()
        engine.transcribe(windows)
        wall = time.perf_counter() - started
        result[str(streams)] = streams * 10.0 / wall  # audio seconds decoded per second
    out.put(result)


def fresh(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--long", default=LONG)
    parser.add_argument(
        "--stream-seconds", type=float, default=0.0, help="streamed audio (0: the whole file)"
    )
    parser.add_argument(
        "--batches", default="1,4,8", help="streams per batch for throughput (e.g. 1,8,32,64)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {r["id"]: r for r in map(json.loads, (DATA / "manifest.jsonl").read_text().splitlines())}
    item = rows[args.long]
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as cache:
        for system in SYSTEMS:
            r: dict = {}
            if system != "jax, 30 s context":
                r["cold"] = fresh(startup, system, args.model, cache)
                r["warm"] = fresh(startup, system, args.model, cache)
            r["stream"] = fresh(streaming, system, args.model, item, args.stream_seconds)
            if system != "jax, 30 s context":
                r["offline"] = fresh(offline, system, args.model, item)
            r["throughput"] = fresh(throughput, system, args.model, item, batches)
            results[system] = r
            print(f"{system}: {json.dumps(r)}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    seconds = results["jax"]["stream"]["seconds"]
    print(f"\n{args.model}, CPU ({os.cpu_count()} cores); ctranslate2 int8 vs jax float32\n")
    print("| measure | " + " | ".join(SYSTEMS) + " |")
    print("|---|" + "---|" * len(SYSTEMS))

    def row(label: str, get, fmt: str = "{:.2f}") -> None:
        values = []
        for system in SYSTEMS:
            try:
                values.append(fmt.format(get(results[system])))
            except KeyError:
                values.append("—")
        print(f"| {label} | " + " | ".join(values) + " |")

    row("start-up to first result, cold (s)", lambda r: r["cold"]["first_result_s"])
    row("start-up to first result, compile cache (s)", lambda r: r["warm"]["first_result_s"])
    row(f"streaming commit latency p50 ({seconds:.0f} s at 1x, s)", lambda r: r["stream"]["p50"])
    row("streaming commit latency p90 (s)", lambda r: r["stream"]["p90"])
    row("streaming WER", lambda r: 100 * r["stream"]["wer"], "{:.2f}%")
    row("peak RSS, streaming (MB)", lambda r: r["stream"]["rss"], "{:.0f}")
    row(
        f"offline greedy RTF ({item['duration_s'] / 60:.1f} min)",
        lambda r: r["offline"]["rtf"],
        "{:.3f}",
    )
    row("offline greedy WER", lambda r: 100 * r["offline"]["wer"], "{:.2f}%")
    for streams in map(str, batches):
        row(
            f"throughput, {streams} stream(s) × 10 s (audio s/s)",
            lambda r, s=streams: r["throughput"][s],
        )
    row("peak RSS, offline (MB)", lambda r: r["offline"]["rss"], "{:.0f}")


if __name__ == "__main__":
    main()
