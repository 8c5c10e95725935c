"""One ASR worker serving many streams: it decides which streams to decode next and batches them.

Scheduling is computation-aware by construction: each round decodes the newest audio of the
streams that have new speech, the longest-waiting first, in one batched engine call. Nothing
is queued per update; if decoding is slower than speech, the next round simply covers more
audio (a larger step), and the buffer cap keeps the cost of a round bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

from bot.asr.engine import DEFAULT_TASK, Engine, Task
from bot.errors import ConfigError
from bot.messages import AudioChunk, CaptionUpdate, CommittedWord, EndOfStream
from bot.streaming.options import StreamingOptions
from bot.streaming.stream import OnlineStream, StreamStats
from bot.streaming.vad import SileroModel

logger = logging.getLogger(__name__)

Clock = Literal["wall", "audio"]


class StreamingTranscriber:
    """Streams in, caption updates out; `step()` runs one scheduling round.

    Stream time (`CaptionUpdate.t_s`) is wall-clock seconds since the stream's origin with
    `clock="wall"` (live audio, computation counted) or the audio received so far with
    `clock="audio"` (offline evaluation of the policy itself).
    """

    def __init__(
        self, engine: Engine, options: StreamingOptions | None = None, clock: Clock = "wall"
    ) -> None:
        self.engine = engine
        self.options = options or StreamingOptions()
        self.clock = clock
        self._vad = SileroModel() if self.options.vad else None
        self._streams: dict[str, OnlineStream] = {}
        self._origins: dict[str, float] = {}
        self._last_decoded: dict[str, float] = {}
        self._closed_stats: dict[str, StreamStats] = {}
        self.rounds = 0
        self.decode_s = 0.0

    # -- streams ----------------------------------------------------------------------------------

    def open(
        self,
        stream_id: str,
        task: Task = DEFAULT_TASK,
        language: str | None = None,
        origin: float | None = None,
        start: float = 0.0,
        history: Sequence[CommittedWord] = (),
    ) -> None:
        """Start a stream; `origin` is the monotonic time of its audio time zero, `start` the
        audio time of its first sample, `history` what it committed before (on resume)."""
        self._closed_stats.pop(stream_id, None)
        if stream_id in self._streams:
            raise ConfigError(f"stream '{stream_id}' is already open")
        self._streams[stream_id] = OnlineStream(
            stream_id, self.options, task, language, self._vad, start, history
        )
        self._origins[stream_id] = time.monotonic() if origin is None else origin
        self._last_decoded[stream_id] = float("-inf")

    def feed(self, message: AudioChunk | EndOfStream) -> None:
        stream = self._streams.get(message.stream_id)
        if stream is None:
            logger.warning("audio for unknown stream %s ignored", message.stream_id)
            return
        if isinstance(message, EndOfStream):
            stream.end()
        else:
            stream.add_audio(message.samples)

    @property
    def active(self) -> bool:
        return any(not s.finished for s in self._streams.values())

    def stats(self, stream_id: str) -> StreamStats:
        stream = self._streams.get(stream_id)
        return stream.stats if stream is not None else self._closed_stats[stream_id]

    def close(self, stream_id: str) -> None:
        """Forget a stream (its statistics stay readable)."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._closed_stats[stream_id] = stream.stats
        self._origins.pop(stream_id, None)
        self._last_decoded.pop(stream_id, None)

    def now(self, stream_id: str) -> float:
        if self.clock == "audio":
            return self._streams[stream_id].received_end
        return time.monotonic() - self._origins[stream_id]

    # -- one round --------------------------------------------------------------------------------

    def pending_work(self) -> bool:
        return any(s.wants_decode() for s in self._streams.values() if not s.finished)

    def step(self) -> list[CaptionUpdate]:
        """Decode the streams that have new speech (one batch) and settle the others."""
        updates = self._poll()
        ready = [s for s in self._streams.values() if not s.finished and s.wants_decode()]
        if ready:
            ready.sort(key=lambda s: self._last_decoded[s.stream_id])
            batch = ready[: self.options.max_batch]
            windows = [s.window() for s in batch]
            started = time.perf_counter()
            hypotheses = self.engine.transcribe(windows)
            elapsed = time.perf_counter() - started
            self.rounds += 1
            self.decode_s += elapsed
            for stream, hypothesis in zip(batch, hypotheses):
                self._last_decoded[stream.stream_id] = time.monotonic()
                update = stream.apply(hypothesis, self.now(stream.stream_id), elapsed)
                if update is not None:
                    updates.append(update)
            updates += self._poll()
        return updates

    def flush(self) -> list[CaptionUpdate]:
        """Shut down now: every open stream commits its tentative words without decoding."""
        updates = []
        for stream in self._streams.values():
            update = stream.flush(self.now(stream.stream_id))
            if update is not None:
                updates.append(update)
        return updates

    def _poll(self) -> list[CaptionUpdate]:
        updates = []
        for stream in self._streams.values():
            update = stream.poll(self.now(stream.stream_id))
            if update is not None:
                updates.append(update)
        return updates
