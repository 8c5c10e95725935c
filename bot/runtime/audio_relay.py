"""Captured audio → the ASR stage: the one place where the running bot drops audio.

The ASR stage's queue holds a couple of seconds; the stage empties it every round, so it fills
only while the stage is stuck in a long decode or being restarted. Meanwhile audio waits in the
relay's backlog, at most `audio.queue_s` of it; beyond that the oldest audio is dropped and
counted per stream (chunks and seconds), so latency stays bounded and memory flat. Capture never
drops (its queue is emptied every poll), and an end of stream is never dropped.

Audio already sent is kept for `REPLAY_S`: a restarted ASR stage hears again what its crashed
predecessor had not committed.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.asr.decoding import MAX_WINDOW_S
from bot.messages import SAMPLE_RATE, AudioChunk, EndOfStream

logger = logging.getLogger(__name__)

# Audio kept after it went to the ASR stage, to replay what a crashed stage had not committed:
# a stream's buffer (all a stage may hold uncommitted) is capped below one Whisper window.
REPLAY_S = MAX_WINDOW_S
WARN_EVERY_CHUNKS = 50

AudioMessage = AudioChunk | EndOfStream


def seconds_of(chunk: AudioChunk) -> float:
    return len(chunk.samples) / SAMPLE_RATE


@dataclass
class DroppedAudio:
    """Audio of one stream the ASR stage never heard because it was behind."""

    chunks: int = 0
    seconds: float = 0.0


class AudioRelay:
    """Takes audio from capture, hands it to the ASR stage, drops the oldest beyond `queue_s`."""

    def __init__(self, queue_s: float) -> None:
        self.queue_s = queue_s
        self.dropped: dict[str, DroppedAudio] = {}
        self._backlog: deque[AudioMessage] = deque()
        self._backlog_s = 0.0
        self._sent: deque[AudioChunk] = deque()

    @property
    def backlog_s(self) -> float:
        """Seconds of audio waiting for the ASR stage."""
        return self._backlog_s

    @property
    def dropped_chunks(self) -> int:
        return sum(d.chunks for d in self.dropped.values())

    @property
    def dropped_s(self) -> float:
        return sum(d.seconds for d in self.dropped.values())

    def relay(self, captured: queue.Queue | None, asr: queue.Queue | None) -> None:
        """Move everything captured so far towards the ASR stage; `asr=None` while the stage is
        down (the audio waits). Queues closed under us (a stage replaced) count as empty."""
        if captured is not None:
            self.take(_drain(captured))
        if asr is not None:
            self.send(asr)

    def take(self, messages: Iterable[AudioMessage]) -> None:
        """Add captured audio to the backlog, dropping its oldest audio beyond `queue_s`."""
        for message in messages:
            self._backlog.append(message)
            if isinstance(message, AudioChunk):
                self._backlog_s += seconds_of(message)
        while self._backlog_s > self.queue_s and self._drop_oldest():
            pass

    def send(self, asr: queue.Queue) -> None:
        """Hand the backlog to the ASR stage's queue until it is full."""
        while self._backlog:
            try:
                asr.put_nowait(self._backlog[0])
            except queue.Full:
                return
            message = self._backlog.popleft()
            if isinstance(message, AudioChunk):
                self._backlog_s -= seconds_of(message)
                self._remember_sent(message)
        self._backlog_s = 0.0  # not a sum of float differences

    def replay_uncommitted(self, replay_from: Mapping[str, float]) -> float:
        """Put back, ahead of the backlog, the sent audio that ends after each stream's
        `replay_from` (audio time: a little before its last committed word, see
        bot/streaming/resume.py): a crashed ASR stage may have held it in its buffer, so no
        speech is lost to the crash. Returns the seconds replayed."""
        replay = [
            chunk
            for chunk in self._sent
            if chunk.start + seconds_of(chunk) > replay_from.get(chunk.stream_id, float("-inf"))
        ]
        self._sent.clear()
        self._backlog.extendleft(reversed(replay))
        seconds = sum(seconds_of(c) for c in replay)
        self._backlog_s += seconds
        logger.info("replaying %.1f s of audio to the new ASR stage", seconds)
        return seconds

    def _drop_oldest(self) -> bool:
        index = next((i for i, m in enumerate(self._backlog) if isinstance(m, AudioChunk)), None)
        if index is None:
            return False
        chunk = self._backlog[index]
        assert isinstance(chunk, AudioChunk)
        del self._backlog[index]
        seconds = seconds_of(chunk)
        self._backlog_s -= seconds
        dropped = self.dropped.setdefault(chunk.stream_id, DroppedAudio())
        dropped.chunks += 1
        dropped.seconds += seconds
        if dropped.chunks % WARN_EVERY_CHUNKS == 1:
            logger.warning(
                "ASR is behind: %.1f s of audio of stream %s dropped so far",
                dropped.seconds,
                chunk.stream_id,
            )
        return True

    def _remember_sent(self, chunk: AudioChunk) -> None:
        # Every stream of the bot is on one audio clock (seconds since the bot's origin).
        self._sent.append(chunk)
        horizon = chunk.start - REPLAY_S
        while self._sent and self._sent[0].start < horizon:
            self._sent.popleft()


def _drain(source: queue.Queue) -> list[AudioMessage]:
    taken: list[AudioMessage] = []
    while True:
        try:
            taken.append(source.get_nowait())
        except (queue.Empty, OSError, ValueError):
            return taken
