"""The capture process: one audio source → timestamped chunks on a queue.

Audio time is seconds since the bot's origin (the supervisor's monotonic clock at capture
start), counted in samples so it never jitters. If the source delivers less than real time
(an overrun upstream) or is lost and reopened, the clock jumps to the wall clock again so
captions stay aligned with what people heard. Given a bounded queue that is full, `Capture`
drops the oldest audio (counted, with a warning). The bot gives it an unbounded one: the
supervisor empties it every poll, and its audio relay (bot/runtime/audio_relay.py) is the one
place where the bot drops audio.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event

import numpy as np

from bot.audio.sources import AudioSource, DeviceLost, create_audio_source
from bot.config import AudioConfig
from bot.errors import CaptionbotError
from bot.messages import SAMPLE_RATE, AudioChunk, EndOfStream, StageError, StageReport

logger = logging.getLogger(__name__)

REPORT_EVERY_S = 5.0
MAX_BACKOFF_S = 10.0
# Counted audio may lag the wall clock by this much before the clock is re-synchronized.
RESYNC_AFTER_S = 0.5


@dataclass
class CaptureCounters:
    chunks: int = 0
    seconds: float = 0.0
    dropped_chunks: int = 0
    overruns: int = 0
    reopens: int = 0

    def report(self) -> StageReport:
        return StageReport(
            stage="capture",
            wall_time=time.time(),
            counters={
                "chunks": float(self.chunks),
                "seconds": round(self.seconds, 3),
                "dropped_chunks": float(self.dropped_chunks),
                "overruns": float(self.overruns),
                "reopens": float(self.reopens),
            },
        )


class Capture:
    """Reads a source and puts `AudioChunk`s on `chunks` until stopped or the source ends."""

    def __init__(
        self,
        source: AudioSource,
        config: AudioConfig,
        chunks: queue.Queue,
        events: queue.Queue,
        origin: float,
        resync: bool = True,
    ) -> None:
        self.source = source
        self.config = config
        self.chunks = chunks
        self.events = events
        self.origin = origin
        self.resync = resync
        self.counters = CaptureCounters()
        # Per stream: the audio time its next chunk starts at (several for a meeting source).
        self._next_start: dict[str, float] = {}

    def run(self, stop: Event) -> None:
        """Open the source (a user error goes to `events` as StageError) and capture."""
        try:
            self.source.open()
        except CaptionbotError as error:
            self.events.put(StageError("capture", str(error)))
            return
        logger.info("capturing %s", self.source.name)
        next_report = time.monotonic() + REPORT_EVERY_S
        backoff = self.config.reopen_backoff_s
        try:
            while not stop.is_set():
                try:
                    samples = self.source.read()
                except DeviceLost as lost:
                    logger.warning("%s; reopening in %.1f s", lost, backoff)
                    if not self._reopen(stop, backoff):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                if samples is None:
                    self._put(EndOfStream(self.config.stream_id))
                    break
                backoff = self.config.reopen_backoff_s
                if isinstance(samples, list):
                    for part in samples:
                        self._emit(part.samples, part.stream_id, part.speaker)
                else:
                    self._emit(samples, self.config.stream_id)
                if time.monotonic() >= next_report:
                    self.events.put(self.counters.report())
                    next_report = time.monotonic() + REPORT_EVERY_S
        finally:
            self.source.close()
            self.events.put(self.counters.report())

    def _reopen(self, stop: Event, backoff: float) -> bool:
        self.source.close()
        while not stop.wait(backoff):
            self.counters.reopens += 1
            try:
                self.source.open()
            except CaptionbotError as error:
                logger.warning("reopening failed: %s", error)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            logger.info("capturing %s again", self.source.name)
            self._next_start.clear()  # back on the wall clock
            return True
        return False

    def _emit(self, samples: np.ndarray, stream_id: str, speaker: str | None = None) -> None:
        if not samples.size:
            return
        duration = len(samples) / SAMPLE_RATE
        wall_start = time.monotonic() - self.origin - duration
        start = self._next_start.get(stream_id)
        if start is None:
            start = max(wall_start, 0.0)
        elif self.resync and wall_start - start > RESYNC_AFTER_S:
            self.counters.overruns += 1
            logger.warning("audio lost upstream: %.1f s missing", wall_start - start)
            start = wall_start
        self._next_start[stream_id] = start + duration
        self._put(AudioChunk(stream_id, samples, start, speaker))
        self.counters.chunks += 1
        self.counters.seconds += duration

    def _put(self, message: AudioChunk | EndOfStream) -> None:
        while True:
            try:
                self.chunks.put_nowait(message)
                return
            except queue.Full:
                try:
                    dropped = self.chunks.get_nowait()
                except queue.Empty:
                    continue
                if isinstance(dropped, AudioChunk):
                    self.counters.dropped_chunks += 1
                    if self.counters.dropped_chunks % 50 == 1:
                        logger.warning(
                            "ASR worker is behind: dropped %d audio chunks so far",
                            self.counters.dropped_chunks,
                        )
                else:  # never lose an end of stream
                    self.chunks.put_nowait(dropped)


def capture_main(
    config: AudioConfig,
    chunks: queue.Queue,
    stop: Event,
    events: queue.Queue,
    origin: float,
) -> None:
    """Process entry of the capture process."""
    try:
        source = create_audio_source(config)
    except CaptionbotError as error:
        events.put(StageError("capture", str(error)))
        return
    Capture(source, config, chunks, events, origin).run(stop)
