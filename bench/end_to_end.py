"""End-to-end benchmark of the meeting bot: speech played into a loopback sink → caption on video.

A private PulseAudio server gets a null sink (the "meeting app's output"); a recording is played
into it at real-time speed with paplay while `captionbot`'s supervisor captures the sink's monitor,
captions it and draws the captions into video frames (file sink). Reported:

- caption delay from the end of a spoken word (on the capture clock) to its commit and to the
  first video frame that shows it committed (p50/p90/max);
- compositor CPU per frame and frames dropped at the configured size and frame rate;
- audio dropped because the ASR stage was behind (the supervisor's audio relay, the one place
  audio is dropped);
- memory (RSS) of every process of the bot over the run, first vs last third (flat or not);
- WER against the reference, so the delay is not bought with accuracy.

    python bench/end_to_end.py                      # LJ Speech long item (5.4 min), base
    python bench/end_to_end.py --minutes 30         # loop the recording for a 30-minute run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.audio.pulse import PulseServer  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.eval.metrics import word_error  # noqa: E402
from bot.messages import SAMPLE_RATE  # noqa: E402
from bot.runtime.supervisor import PipelineResult, Supervisor  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SINK = "captionbot_bench"


class RssSampler:
    """Sums VmRSS of a process tree every few seconds."""

    def __init__(self, root_pid: int, every_s: float = 2.0) -> None:
        self.root_pid = root_pid
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every_s):
            total = sum(_rss_mb(pid) for pid in [self.root_pid, *_children(self.root_pid)])
            self.samples.append((time.monotonic() - started, total))


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task")
        kids = []
        for task in tasks.iterdir():
            text = (task / "children").read_text().split()
            kids += [int(k) for k in text]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _recording(item: str, minutes: float | None, folder: Path) -> tuple[Path, str, float]:
    rows = {
        row["id"]: row
        for row in map(json.loads, (DATA / "manifest.jsonl").read_text().splitlines())
    }
    row = rows[item]
    audio, rate = soundfile.read(DATA / row["audio"], dtype="float32")
    assert rate == SAMPLE_RATE
    text = row["text"]
    if minutes:
        repeats = max(1, round(minutes * 60 / (len(audio) / rate)))
        pause = np.zeros(rate, dtype=np.float32)
        audio = np.concatenate([np.concatenate([audio, pause])] * repeats)
        text = " ".join([text] * repeats)
    path = folder / "meeting.wav"
    soundfile.write(path, audio, rate)
    return path, text, len(audio) / rate


def _row(name: str, values: list[float], unit: str = "s") -> str:
    if not values:
        return f"| {name} | - | - | - |"
    p50, p90 = np.percentile(values, [50, 90])
    return f"| {name} | {p50:.2f} {unit} | {p90:.2f} {unit} | {max(values):.2f} {unit} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--item", default="ljspeech_LJ001-0001_0045_long")
    parser.add_argument("--minutes", type=float, help="loop the recording to about this long")
    parser.add_argument("--model", default="base")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, reference, duration = _recording(args.item, args.minutes, folder)
        with PulseServer(folder / "pulse", [SINK]) as pulse:
            config = load_config(
                None,
                {
                    "engine.model": args.model,
                    "task": "transcribe",
                    "language": "en",
                    "audio.source": "loopback",
                    "audio.device": f"{SINK}.monitor",
                    "video.width": width,
                    "video.height": height,
                    "video.fps": args.fps,
                    "sinks.file": str(folder / "meeting.mp4"),
                    "overlay.enabled": False,
                    "outputs.dir": str(folder / "out"),
                },
            )
            sampler = RssSampler(os.getpid())
            player: list[subprocess.Popen] = []

            def play(supervisor: Supervisor) -> None:
                player.append(pulse.play(path, SINK))
                sampler.start()

                def stop_when_played() -> None:
                    player[0].wait()
                    time.sleep(3.0)  # the last words' delay
                    supervisor.request_stop()

                threading.Thread(target=stop_when_played, daemon=True).start()

            started = time.monotonic()
            result = Supervisor(config, folder / "out", stem="meeting", on_start=play).run()
            wall = time.monotonic() - started
            sampler.stop()
            for p in player:
                p.kill()
    _report(args, result, reference, duration, wall, sampler.samples)


def _report(
    args: argparse.Namespace,
    result: PipelineResult,
    reference: str,
    duration: float,
    wall: float,
    rss: list[tuple[float, float]],
) -> None:
    if result.error:
        raise SystemExit(f"bot failed: {result.error}")
    words = [w for s in result.streams.values() for w in s.words]
    text = "".join(w.text for w in words)
    wer = word_error(reference, text, "en")
    committed = [w.emitted_s - w.end for w in words]
    drawn = [x for s in result.streams.values() for x in s.shown_latency_s]
    video = result.reports.get("compositor")
    capture = result.reports.get("capture")
    third = max(len(rss) // 3, 1)
    first_rss = np.median([r for _, r in rss[:third]]) if rss else float("nan")
    last_rss = np.median([r for _, r in rss[-third:]]) if rss else float("nan")
    print(f"\ncaptionbot end to end: {args.item}, {duration / 60:.1f} min played into a loopback")
    print(f"sink, model {args.model}, video {args.size}@{args.fps:g}, wall {wall:.0f} s\n")
    print("| caption delay (word end → ...) | p50 | p90 | max |")
    print("|---|---|---|---|")
    print(_row("committed", committed))
    print(_row("visible on a video frame", drawn))
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| WER | {wer.rate:.2%} ({len(words)} words) |")
    if video:
        c = video.counters
        print(
            f"| compositor ms/frame avg / p90 | {c.get('ms_per_frame_avg', float('nan')):.2f} / "
            f"{c.get('ms_per_frame_p90', float('nan')):.2f} |"
        )
        print(f"| compositor CPU ms/frame (all its threads) | {c.get('cpu_ms_per_frame', 0):.2f} |")
        print(
            f"| frames sent / dropped | {c.get('frames', 0):.0f}"
            f" / {c.get('dropped_frames', 0):.0f} |"
        )
    if capture:
        c = capture.counters
        print(f"| audio chunks / reopens | {c.get('chunks', 0):.0f} / {c.get('reopens', 0):.0f} |")
    dropped_chunks = sum(d.chunks for d in result.dropped_audio.values())
    print(
        f"| audio dropped (ASR behind) | {result.dropped_audio_s:.1f} s ({dropped_chunks} chunks) |"
    )
    print(f"| caption updates not drawn | {result.dropped_caption_updates} |")
    print(f"| RSS all processes, first third → last third | {first_rss:.0f} → {last_rss:.0f} MB |")
    if rss:
        print(f"| RSS max | {max(r for _, r in rss):.0f} MB |")


if __name__ == "__main__":
    main()
