"""The ASR stage: audio chunks in, caption updates out, for every stream of the bot.

One process serves all streams (the streaming policy batches their windows into one engine
call per round), so a meeting with one stream per participant, or many sessions, costs one
engine. Streams open on their first chunk. A stage started again after a crash resumes each
stream from the words it had committed (prompt and duplicate suppression), at the audio time of
the first chunk it receives (the relay replays from a little before the last committed word).
It takes every chunk it is given; what it cannot take yet waits in the supervisor's audio
relay, the one place where the bot drops audio. (Inside, the streaming policy still caps a
stream's buffer below one Whisper window when a single round ran that long;
bot/streaming/stream.py counts that in its stats.)
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import numpy as np

from bot.asr.engine import Engine
from bot.config import Config
from bot.errors import CaptionbotError
from bot.messages import (
    SAMPLE_RATE,
    AudioChunk,
    CaptionUpdate,
    CommittedWord,
    EndOfStream,
    StageError,
    StageReport,
)

logger = logging.getLogger(__name__)

REPORT_EVERY_S = 5.0
# Gaps in the audio clock (a capture dropout) up to this long are filled with silence so word
# times stay on the stream clock; longer ones are logged and the clock drifts by the gap.
MAX_FILLED_GAP_S = 60.0
IDLE_WAIT_S = 0.05
# Chunks that start later than this after the previous one's end mark a gap in the audio.
GAP_TOLERANCE_S = 0.02


@dataclass
class _StreamClock:
    """Where a stream's audio stands: the next expected sample time."""

    next_start: float
    gaps_filled_s: float = 0.0


@dataclass
class WorkerCounters:
    chunks: int = 0
    audio_s: float = 0.0
    updates: int = 0
    gaps_filled_s: float = 0.0
    streams: set[str] = field(default_factory=set)


class AsrWorker:
    """Runs the streaming transcriber over chunks taken from a queue."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        origin: Callable[[], float],
        resume: Mapping[str, tuple[CommittedWord, ...]] | None = None,
    ) -> None:
        """`origin()` gives the monotonic time of audio time zero (known once audio flows)."""
        self.config = config
        # Imported here: the supervisor imports this module for `AsrStageArgs` and should not
        # load the policy's VAD and its runtime, which only the ASR process needs.
        from bot.streaming.transcriber import StreamingTranscriber

        self.transcriber = StreamingTranscriber(engine, config.streaming.options(), clock="wall")
        self._origin = origin
        self._resume = dict(resume or {})
        self._clocks: dict[str, _StreamClock] = {}
        self._speakers: dict[str, str] = {}  # stream id → participant name (joined meetings)
        self.counters = WorkerCounters()

    def feed(self, message: AudioChunk | EndOfStream) -> None:
        if isinstance(message, EndOfStream):
            if message.stream_id in self._clocks:
                self.transcriber.feed(message)
            return
        clock = self._clocks.get(message.stream_id)
        if clock is None:
            clock = self._open(message)
        if message.speaker:
            self._speakers[message.stream_id] = message.speaker
        gap = message.start - clock.next_start
        if gap > GAP_TOLERANCE_S:
            if gap <= MAX_FILLED_GAP_S:
                silence = np.zeros(round(gap * SAMPLE_RATE), dtype=np.float32)
                self.transcriber.feed(AudioChunk(message.stream_id, silence, clock.next_start))
                self.counters.gaps_filled_s += gap
            else:
                logger.warning(
                    "stream %s: %.0f s of audio missing; caption times shift by that much",
                    message.stream_id,
                    gap,
                )
        self.transcriber.feed(message)
        clock.next_start = message.start + len(message.samples) / SAMPLE_RATE
        self.counters.chunks += 1
        self.counters.audio_s += len(message.samples) / SAMPLE_RATE

    def _open(self, first: AudioChunk) -> _StreamClock:
        history = self._resume.pop(first.stream_id, ())
        self.transcriber.open(
            first.stream_id,
            task=self.config.task,
            language=self.config.language_or_none,
            origin=self._origin(),
            start=first.start,
            history=history,
        )
        if history:
            logger.info(
                "stream %s resumed at %.1f s after %d committed words",
                first.stream_id,
                first.start,
                len(history),
            )
        self.counters.streams.add(first.stream_id)
        clock = _StreamClock(next_start=first.start)
        self._clocks[first.stream_id] = clock
        return clock

    def step(self) -> list[CaptionUpdate]:
        updates = self._named(self.transcriber.step())
        self.counters.updates += len(updates)
        return updates

    def flush(self) -> list[CaptionUpdate]:
        return self._named(self.transcriber.flush())

    def _named(self, updates: list[CaptionUpdate]) -> list[CaptionUpdate]:
        """Updates of a meeting participant's stream carry the participant's name."""
        if not self._speakers:
            return updates
        return [replace(u, speaker=self._speakers.get(u.stream_id, u.speaker)) for u in updates]

    def report(self) -> StageReport:
        c = self.counters
        return StageReport(
            stage="asr",
            wall_time=time.time(),
            counters={
                "streams": float(len(c.streams)),
                "chunks": float(c.chunks),
                "audio_s": round(c.audio_s, 3),
                "updates": float(c.updates),
                "rounds": float(self.transcriber.rounds),
                "decode_s": round(self.transcriber.decode_s, 3),
                "gaps_filled_s": round(c.gaps_filled_s, 3),
            },
        )

    def run(
        self, chunks: queue.Queue, updates: queue.Queue, stop: Event, events: queue.Queue
    ) -> None:
        """Take chunks, decode, emit updates until `stop` (then commit what is shown and return)
        or until every stream ended."""
        next_report = time.monotonic() + REPORT_EVERY_S
        ended: set[str] = set()
        while not stop.is_set():
            self._drain(chunks, wait=not self.transcriber.pending_work(), ended=ended)
            for update in self.step():
                updates.put(update)
            if time.monotonic() >= next_report:
                events.put(self.report())
                next_report = time.monotonic() + REPORT_EVERY_S
            if ended and ended >= self.counters.streams and not self.transcriber.active:
                break
        for update in self.flush():
            updates.put(update)
        events.put(self.report())

    def _drain(self, chunks: queue.Queue, wait: bool, ended: set[str]) -> int:
        """Feed every chunk waiting in the queue; block briefly for one if `wait`."""
        taken = 0
        timeout = IDLE_WAIT_S if wait else 0.0
        while True:
            try:
                message = chunks.get(timeout=timeout) if timeout else chunks.get_nowait()
            except queue.Empty:
                return taken
            timeout = 0.0
            taken += 1
            if isinstance(message, EndOfStream):
                ended.add(message.stream_id)
            self.feed(message)


@dataclass(frozen=True)
class AsrStageArgs:
    """Everything the ASR process is started with."""

    config: Config
    chunks: Queue[AudioChunk | EndOfStream]
    """In: audio of every stream, from the supervisor's audio relay."""
    updates: Queue[CaptionUpdate]
    """Out: caption updates of every stream, to the supervisor's caption router."""
    events: Queue[StageReport | StageError]
    stop: Event
    """Set by the supervisor: commit what is shown and return."""
    origin: Synchronized[float]
    """The monotonic time of audio time zero, set by the supervisor when capture starts, so
    caption times of every process are on one clock."""
    resume: Mapping[str, tuple[CommittedWord, ...]] = field(default_factory=dict)
    """The last committed words of each stream, for a stage restarted after a crash."""


def asr_stage_main(args: AsrStageArgs) -> None:
    """Process entry: build the engine, then serve until stopped or all streams ended."""
    from bot.asr.factory import create_engine_for

    try:
        engine = create_engine_for(args.config)
    except CaptionbotError as error:
        args.events.put(StageError("asr", str(error)))
        return
    logger.info("ASR worker ready: %s %s", engine.info.name, engine.info.model)
    origin = args.origin
    worker = AsrWorker(engine, args.config, lambda: origin.value, args.resume)
    args.events.put(worker.report())
    worker.run(args.chunks, args.updates, args.stop, args.events)
