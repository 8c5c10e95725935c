"""Compositor cost: CPU per frame at 1280x720@30 with captions changing several times a second.

Runs the compositor loop in this process for a while per configuration (no sink, MP4 file sink,
caption strip never vs always re-rendered) and prints a table: CPU ms per frame (all threads of
the compositor, ffmpeg's own encoding excluded), wall ms per frame, frames sent and dropped.

    python bench/compositor.py [--seconds 20] [--size 1280x720] [--fps 30]
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import load_config  # noqa: E402
from bot.messages import CaptionUpdate, CommittedWord, Word  # noqa: E402
from bot.video.compositor import Compositor  # noqa: E402

WORDS = [
    "and",
    "so",
    "my",
    "fellow",
    "americans",
    "ask",
    "not",
    "what",
    "your",
    "country",
    "can",
    "do",
    "for",
    "you",
    "ask",
    "what",
    "you",
    "can",
    "do",
    "for",
    "your",
    "country",
]


def feed(updates: queue.Queue, stop: threading.Event, per_second: float) -> None:
    """Caption updates like a live stream: a word committed, the tentative tail changed."""
    i = 0
    while not stop.wait(1 / per_second):
        word = WORDS[i % len(WORDS)]
        tail = tuple(Word(" " + w, 0, 0) for w in WORDS[(i + 1) % len(WORDS) :][:3])
        updates.put(
            CaptionUpdate("meeting", 0.0, (CommittedWord(" " + word, 0, 0, 1, 0, 0),), tail)
        )
        i += 1


def run(name: str, overrides: dict, seconds: float, per_second: float) -> dict:
    config = load_config(None, overrides)
    updates: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    compositor = Compositor(config)
    feeder = threading.Thread(target=feed, args=(updates, stop, per_second), daemon=True)
    runner = threading.Thread(target=compositor.run, args=(updates, stop, events))
    runner.start()
    feeder.start()
    time.sleep(seconds)
    stop.set()
    runner.join(10)
    report = list(events.queue)[-1]
    return {"name": name, **report.counters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--updates-per-second", type=float, default=3.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    base = {"video.width": width, "video.height": height, "video.fps": args.fps}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(run("no sink", base, args.seconds, args.updates_per_second))
        rows.append(
            run(
                "MP4 file sink",
                {**base, "sinks.file": str(Path(tmp) / "bench.mp4")},
                args.seconds,
                args.updates_per_second,
            )
        )
    print(
        f"\ncompositor at {args.size}@{args.fps:g}, captions changing "
        f"{args.updates_per_second:g}x/s, {args.seconds:g} s per row\n"
    )
    print("| sink | CPU ms/frame | wall ms/frame avg / p90 | frames | dropped | strip renders |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['cpu_ms_per_frame']:.2f} | {r['ms_per_frame_avg']:.2f} / "
            f"{r['ms_per_frame_p90']:.2f} | {r['frames']:.0f} | "
            f"{r['dropped_frames'] + r['sink_dropped_frames']:.0f} | {r['caption_renders']:.0f} |"
        )


if __name__ == "__main__":
    main()
