"""The capture stage: the configured audio source → `AudioChunk`s for the audio relay."""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bot.config import AudioConfig
from bot.messages import AudioChunk, EndOfStream, StageError, StageReport


@dataclass(frozen=True)
class CaptureStageArgs:
    """Everything the capture process is started with."""

    config: AudioConfig
    chunks: Queue[AudioChunk | EndOfStream]
    """Out: captured audio. Unbounded: the supervisor empties it every poll, and its audio
    relay bounds the audio in flight (and counts what it drops), so capture never drops."""
    events: Queue[StageReport | StageError]
    stop: Event
    origin: float
    """The monotonic time of audio time zero."""


def capture_stage_main(args: CaptureStageArgs) -> None:  # pragma: no cover - child process
    """Process entry of the capture process."""
    from bot.audio.capture import capture_main

    capture_main(args.config, args.chunks, args.stop, args.events, args.origin)
