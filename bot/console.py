"""What the terminal shows: progress bars, live captions, and the summary table."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.messages import CaptionUpdate, join_words

if TYPE_CHECKING:
    from tqdm import tqdm

    from bot.config import Config
    from bot.runtime.supervisor import PipelineResult
    from bot.transcribe import FileResult

DIM, RESET = "\033[2m", "\033[0m"


class ProgressBoard:
    """One progress bar per file (seconds of audio delivered), on stderr."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bars: dict[str, tqdm] = {}

    def start(self, paths: list[Path]) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        from bot.audio.decode import audio_duration
        from bot.errors import AudioInputError
        from bot.transcribe import unique_stems

        for position, (path, stem) in enumerate(zip(paths, unique_stems(paths))):
            try:
                total = round(audio_duration(path), 1)
            except AudioInputError:
                continue
            self._bars[stem] = tqdm(
                total=total,
                desc=stem[:28],
                unit="s",
                position=position,
                leave=True,
                bar_format="{desc:<28} {bar} {n:.0f}/{total:.0f} s {postfix}",
                file=sys.stderr,
            )

    def progress(self, stream_id: str, seconds: float) -> None:
        bar = self._bars.get(stream_id)
        if bar is not None and seconds > bar.n:
            bar.update(min(seconds, bar.total) - bar.n)

    def update(self, update: CaptionUpdate) -> None:
        bar = self._bars.get(update.stream_id)
        if bar is not None and update.committed:
            bar.set_postfix_str(join_words(update.committed)[-40:], refresh=False)
        if bar is not None and update.final:
            bar.update(bar.total - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


class StartupStatus:
    """What the bot is doing before captions flow, on stderr: a line per step, and for a step
    that runs over a second a line that counts its seconds (redrawn in place on a terminal).

    Shown on a terminal unless `-q`; elsewhere (pipes, logs, tests) only with `-v`, so a command
    that fails prints its one error line alone. `forward` names loggers whose INFO lines
    (assembling the model...) are shown under a step even when logging is quieter.
    """

    TICK_S = 0.5

    def __init__(
        self,
        enabled: bool,
        stream: TextIO | None = None,
        forward: tuple[str, ...] = (),
    ) -> None:
        self._out = stream or sys.stderr
        self.enabled = enabled
        self._tty = self._out.isatty()
        self._forward = forward
        self._lock = threading.Lock()

    def note(self, message: str) -> None:
        if self.enabled:
            with self._lock:
                self._out.write(f"captionbot: {message}\n")
                self._out.flush()

    def begin(self, label: str) -> StartupStep:
        """Start a step; call `done()` (or `failed()`) on what it returns."""
        return StartupStep(self, label)

    def _write(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()


class StartupStep:
    """One step of `StartupStatus`: `with status.begin("loading the engine"):` or begin/done."""

    def __init__(self, status: StartupStatus, label: str) -> None:
        self._status = status
        self._label = label
        self._started = time.monotonic()
        self._finished = threading.Event()
        self._ticker: threading.Thread | None = None
        self._restore: list[tuple[logging.Logger, logging.Handler, int, bool]] = []
        if not status.enabled:
            return
        status._write(f"captionbot: {label}…" + ("" if status._tty else "\n"))
        if status._tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        for name in status._forward:
            logger = logging.getLogger(name)
            handler = _StepLogHandler(self)
            self._restore.append((logger, handler, logger.level, logger.propagate))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False

    def __enter__(self) -> StartupStep:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.done()
        else:
            self.failed()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def done(self) -> None:
        self._finish(f"done in {self.elapsed():.1f} s")

    def failed(self) -> None:
        self._finish(f"stopped after {self.elapsed():.1f} s")

    def line(self, message: str) -> None:
        """A line printed under the step (what a forwarded logger said)."""
        status = self._status
        if status._tty:
            status._write(f"\r\033[K  {message}\ncaptionbot: {self._label}…")
        else:
            status._write(f"  {message}\n")

    def _finish(self, outcome: str) -> None:
        if self._finished.is_set():
            return
        self._finished.set()
        for logger, handler, level, propagate in self._restore:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        if self._ticker is not None:
            self._ticker.join()
        if self._status.enabled:
            start = "\r\033[K" if self._status._tty else ""
            self._status._write(f"{start}captionbot: {self._label}… {outcome}\n")

    def _tick(self) -> None:
        shown = 0
        while not self._finished.wait(StartupStatus.TICK_S):
            seconds = int(self.elapsed())
            if seconds > shown:
                shown = seconds
                self._status._write(f"\r\033[Kcaptionbot: {self._label}… {seconds} s")


class _StepLogHandler(logging.Handler):
    def __init__(self, step: StartupStep) -> None:
        super().__init__(logging.INFO)
        self._step = step

    def emit(self, record: logging.LogRecord) -> None:
        self._step.line(record.getMessage())


class LiveCaptions:
    """Captions as a viewer sees them: committed text, then the tentative tail dimmed.

    On a terminal the current line is redrawn in place; elsewhere each committed sentence is
    printed once, so logs and pipes get clean text.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stdout
        self._tty = self._out.isatty()
        self._line = ""

    def update(self, update: CaptionUpdate) -> None:
        self._line += "".join(w.text for w in update.committed)
        tentative = join_words(update.tentative)
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            visible = self._line.strip()
            room = max(width - len(tentative) - 1, 10)
            shown = visible[-room:]
            self._out.write(f"\r\033[K{shown} {DIM}{tentative[: width - len(shown) - 1]}{RESET}")
        if self._line.rstrip().endswith((".", "?", "!")) or update.final:
            if self._line.strip():
                self._out.write(("\r\033[K" if self._tty else "") + self._line.strip() + "\n")
            self._line = ""
        self._out.flush()

    def close(self) -> None:
        if self._line.strip():
            self._out.write(("\r\033[K" if self._tty else "") + self._line.strip() + "\n")
            self._line = ""
        self._out.flush()


def print_summary(results: list[FileResult], realtime: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    header = ("file", "audio s", "words", "commit p50", "p90", "first-seen p50", "RTF", "status")
    rows = []
    for result in results:
        if result.transcript is None:
            rows.append((result.stem, "-", "-", "-", "-", "-", "-", f"FAILED: {result.error}"))
            continue
        t = result.transcript
        commit, seen = t.extra["commit_latency_s"], t.extra["first_seen_latency_s"]
        rtf = t.extra["decode_s"] / t.duration_s if t.duration_s else 0.0
        rows.append(
            (
                result.stem,
                f"{t.duration_s:.1f}",
                str(len(t.words)),
                _seconds(commit["p50"]),
                _seconds(commit["p90"]),
                _seconds(seen["p50"]),
                f"{rtf:.2f}",
                str(result.error) if not result.ok else result.warning or "ok",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    mode = "real time, computation counted" if realtime else "fast, stream clock = audio time"
    print(f"\nSummary ({mode}; latency = seconds after the word was spoken):", file=out)
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
    failed = sum(not r.ok for r in results)
    written = [r for r in results if r.outputs]
    if written:
        print(f"Transcripts in {written[0].outputs['json'].parent}", file=out)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=out)


def _seconds(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def print_bot_summary(result: PipelineResult, config: Config, out: TextIO | None = None) -> None:
    """What a bot run produced: words and delays per stream, files, health of the processes."""
    out = out or sys.stdout
    latency = result.latency()
    for stream_id, record in result.streams.items():
        words = len(record.words)
        out.write(f"{stream_id}: {words} words, language {record.language or '?'}\n")
        for path in result.outputs.get(stream_id, {}).values():
            out.write(f"  {path}\n")
    committed, drawn = latency["committed"], latency["drawn"]
    if committed.words:
        line = (
            f"caption delay after a word is spoken: committed p50 {_seconds(committed.p50)}"
            f" p90 {_seconds(committed.p90)}"
        )
        if drawn.words:
            line += f"; on video p50 {_seconds(drawn.p50)} p90 {_seconds(drawn.p90)}"
        out.write(line + "\n")
    if config.sinks.file and Path(config.sinks.file).exists():
        out.write(f"video: {config.sinks.file}\n")
    health = []
    for name, count in result.restarts.items():
        if count:
            health.append(f"{name} restarted {count}x")
    if result.dropped_audio_s:
        health.append(f"{result.dropped_audio_s:.1f} s of audio dropped (ASR behind)")
    video = result.reports.get("compositor")
    if video and video.counters.get("dropped_frames"):
        health.append(f"{int(video.counters['dropped_frames'])} video frames dropped")
    if result.dropped_caption_updates:
        health.append(f"{result.dropped_caption_updates} caption updates not drawn")
    if health:
        out.write("; ".join(health) + "\n")
    out.flush()
