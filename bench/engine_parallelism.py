"""How CTranslate2 should use the cores: threads per worker vs workers per batch; prints a table.

For each (workers, threads) setting, in a fresh process: the time one `engine.transcribe` call
takes for batches of 1, 2, 4 and 8 streaming windows of real speech (best of 3), a single
window at 2, 5, 10 and 15 s, and the offline (beam 5) transcription of the first minute of the
long file. "auto" is what `engine.workers: 0, cpu_threads: 0` picks on this machine.

    python bench/engine_parallelism.py [--model tiny.en] [--settings 1x2,2x1,auto]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LONG = DATA / "audio" / "ljspeech_LJ001-0001_0045_long.wav"
WINDOW_S = 8.0
BATCHES = (1, 2, 4, 8)
SINGLE_S = (2.0, 5.0, 10.0, 15.0)
REPEATS = 3


def _measure(model: str, workers: int, threads: int, out: multiprocessing.Queue) -> None:
    from bot.asr.engine import Window
    from bot.asr.factory import create_engine
    from bot.audio.decode import load_audio
    from bot.config import EngineConfig

    engine = create_engine(EngineConfig(model=model, workers=workers, cpu_threads=threads))
    audio = load_audio(LONG)

    def window(start_s: float, seconds: float) -> Window:
        piece = audio[int(start_s * 16000) : int((start_s + seconds) * 16000)]
        return Window(piece, "transcribe", "en", prompt="the art of printing")

    def best_of(windows: list[Window]) -> float:
        engine.transcribe(windows)  # warm
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            engine.transcribe(windows)
            times.append(time.perf_counter() - started)
        return min(times)

    batch = {n: best_of([window(i * 17.3, WINDOW_S) for i in range(n)]) for n in BATCHES}
    single = {s: best_of([window(40.0, s)]) for s in SINGLE_S}
    started = time.perf_counter()
    engine.transcribe_offline(audio[: 60 * 16000], "transcribe", "en")
    offline = time.perf_counter() - started
    out.put(
        {
            "workers": engine.info.details.get("workers", "1"),
            "threads": engine.info.details.get("cpu_threads", "?"),
            "batch": batch,
            "single": single,
            "offline": offline,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _setting(text: str) -> tuple[int, int]:
    if text == "auto":
        return 0, 0
    workers, threads = text.split("x")
    return int(workers), int(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument(
        "--settings", default="1x2,2x1,1x1,auto", help="WORKERSxTHREADS, comma separated"
    )
    args = parser.parse_args()
    if not LONG.is_file():
        print(f"{LONG} is missing: this benchmark reads ../shared/data")
        return 1
    context = multiprocessing.get_context("spawn")
    print(f"model {args.model}, {len(os.sched_getaffinity(0))} cores; seconds per transcribe call")
    header = ["setting", *(f"batch {n}" for n in BATCHES), *(f"1 x {s:g} s" for s in SINGLE_S)]
    print("| " + " | ".join([*header, "offline 60 s", "peak RSS MB"]) + " |")
    print("|" + "---|" * (len(header) + 2))
    for text in args.settings.split(","):
        out: multiprocessing.Queue = context.Queue()
        process = context.Process(target=_measure, args=(args.model, *_setting(text), out))
        process.start()
        row = out.get()
        process.join()
        name = f"{text} ({row['workers']}x{row['threads']})" if text == "auto" else text
        cells = [f"{row['batch'][n]:.3f}" for n in BATCHES]
        cells += [f"{row['single'][s]:.3f}" for s in SINGLE_S]
        cells += [f"{row['offline']:.2f}", f"{row['rss']:.0f}"]
        print("| " + " | ".join([name, *cells]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
