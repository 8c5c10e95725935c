"""Caption updates from the ASR stage → every output of their stream, the compositor, a callback.

Routing is per stream: a stream's outputs (its caption files) open on its first update, so a
meeting heard as one stream per participant gets files per participant. Outputs shared by all
streams (the overlay server, closed-caption APIs) get every update. The router keeps what is
known of each stream (its committed words) for restarts and the run summary.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.messages import CaptionsDrawn, CaptionUpdate, CommittedWord

logger = logging.getLogger(__name__)


class CaptionOutput(Protocol):
    """An output fed with caption updates (of one stream, or of all for a shared output)."""

    def add(self, update: CaptionUpdate) -> None: ...

    def close(self) -> None: ...


@dataclass
class StreamRecord:
    """What the bot knows of a stream: every committed word, in order, and when each was seen
    committed on a video frame (seconds after the word's end)."""

    words: list[CommittedWord] = field(default_factory=list)
    language: str | None = None
    drawn_committed: int = 0
    shown_latency_s: list[float] = field(default_factory=list)


class CaptionRouter:
    """Routes caption updates; `open_outputs(stream_id)` gives a new stream's own outputs."""

    def __init__(
        self,
        open_outputs: Callable[[str], Sequence[CaptionOutput]],
        shared: Sequence[CaptionOutput] = (),
        on_update: Callable[[CaptionUpdate], None] | None = None,
    ) -> None:
        self.streams: dict[str, StreamRecord] = {}
        self.dropped_caption_updates = 0
        """Updates the compositor had no room for (it was behind); files got them all."""
        self._open_outputs = open_outputs
        self._shared = list(shared)
        self._own: dict[str, list[CaptionOutput]] = {}
        self._on_update = on_update

    def share(self, output: CaptionOutput) -> None:
        """Feed `output` with the updates of every stream from now on."""
        self._shared.append(output)

    def drain(
        self, updates: queue.Queue | None, captions: queue.Queue | None, timeout: float
    ) -> int:
        """Route every update waiting in `updates` (waiting up to `timeout` for the first);
        `captions` is the compositor's queue, None without video. Returns the count routed."""
        if updates is None:
            return 0
        routed = 0
        try:
            update = updates.get(timeout=timeout) if timeout else updates.get_nowait()
            while True:
                self.route(update, captions)
                routed += 1
                update = updates.get_nowait()
        except (queue.Empty, OSError, ValueError):  # ValueError, OSError: a closed queue
            return routed

    def route(self, update: CaptionUpdate, captions: queue.Queue | None = None) -> None:
        record = self.streams.get(update.stream_id)
        if record is None:
            record = self.streams[update.stream_id] = StreamRecord()
            self._own[update.stream_id] = list(self._open_outputs(update.stream_id))
        record.words.extend(update.committed)
        record.language = update.language or record.language
        for output in (*self._own[update.stream_id], *self._shared):
            try:
                output.add(update)
            except Exception:  # an output must never stop the captions
                logger.exception("caption output %s failed", type(output).__name__)
        if captions is not None:
            try:
                captions.put_nowait(update)
            except queue.Full:
                self.dropped_caption_updates += 1
                logger.warning("compositor is behind: caption update dropped")
        if self._on_update is not None:
            self._on_update(update)

    def record_drawn(self, event: CaptionsDrawn, origin_wall: float) -> None:
        """A frame showed `event.committed_words` of a stream: note how late each new one was
        (`origin_wall`: wall time of audio time zero)."""
        record = self.streams.get(event.stream_id)
        if record is None:
            return
        shown = min(event.committed_words, len(record.words))
        for word in record.words[record.drawn_committed : shown]:
            record.shown_latency_s.append(event.wall_time - (origin_wall + word.end))
        record.drawn_committed = max(record.drawn_committed, shown)

    def outputs_of(self, stream_id: str) -> list[CaptionOutput]:
        """The stream's own outputs (empty before its first update)."""
        return self._own.get(stream_id, [])

    def close(self) -> None:
        """Close every output once (each stream's own, then the shared ones)."""
        for outputs in self._own.values():
            for output in outputs:
                _close(output)
        for output in self._shared:
            _close(output)


def _close(output: CaptionOutput) -> None:
    try:
        output.close()
    except Exception:
        logger.exception("closing %s failed", type(output).__name__)
