"""Drive a `StreamingTranscriber` with recordings, as live audio or as fast as it decodes.

`run_realtime` delivers each recording at real-time speed on the wall clock, with the time
spent decoding counted, exactly as a live meeting would arrive: whatever audio became due
while the engine was busy is handed over at once before the next round. `run_fast` delivers a
fixed step of audio per round and uses audio time as the stream clock, which measures the
policy itself, independent of the machine's speed.

Both take recordings lazily and keep at most `max_streams` open at once: when one ends, the
next starts (its clock starts then), so a folder of long files never sits in memory at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from bot.asr.engine import DEFAULT_TASK, Task
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, EndOfStream
from bot.streaming.transcriber import StreamingTranscriber

IDLE_WAIT_S = 0.02


@dataclass(frozen=True)
class Recording:
    stream_id: str
    audio: np.ndarray
    task: Task = DEFAULT_TASK
    language: str | None = None


UpdateHandler = Callable[[CaptionUpdate], None]
ProgressHandler = Callable[[str, float], None]


@dataclass
class _Playing:
    recording: Recording
    origin: float  # monotonic time of the recording's first sample
    sent: int = 0  # samples handed to the transcriber
    ended: bool = False


class _Player:
    """Opens recordings as slots free up and hands their audio to the transcriber."""

    def __init__(
        self,
        transcriber: StreamingTranscriber,
        recordings: Iterable[Recording],
        max_streams: int,
    ) -> None:
        self._transcriber = transcriber
        self._waiting: Iterator[Recording] = iter(recordings)
        self._max_streams = max(1, max_streams)
        self.playing: dict[str, _Playing] = {}
        self._fill()

    def deliver(
        self, stream_id: str, until_sample: int, on_progress: ProgressHandler | None
    ) -> None:
        """Send audio up to `until_sample`; end the stream at the end of its recording."""
        playing = self.playing[stream_id]
        recording = playing.recording
        until_sample = min(until_sample, len(recording.audio))
        if until_sample > playing.sent:
            samples = recording.audio[playing.sent : until_sample]
            chunk = AudioChunk(stream_id, samples, playing.sent / SAMPLE_RATE)
            self._transcriber.feed(chunk)
            playing.sent = until_sample
        if until_sample >= len(recording.audio) and not playing.ended:
            self._transcriber.feed(EndOfStream(stream_id))
            playing.ended = True
        if on_progress:
            on_progress(stream_id, playing.sent / SAMPLE_RATE)

    def finished(self, stream_id: str) -> None:
        self.playing.pop(stream_id, None)
        self._transcriber.close(stream_id)
        self._fill()

    def _fill(self) -> None:
        while len(self.playing) < self._max_streams:
            recording = next(self._waiting, None)
            if recording is None:
                return
            origin = time.monotonic()
            self._transcriber.open(
                recording.stream_id, recording.task, recording.language, origin=origin
            )
            self.playing[recording.stream_id] = _Playing(recording, origin)


def _dispatch(updates: list[CaptionUpdate], player: _Player, on_update: UpdateHandler) -> None:
    for update in updates:
        on_update(update)
        if update.final:
            player.finished(update.stream_id)


def run_realtime(
    transcriber: StreamingTranscriber,
    recordings: Iterable[Recording],
    on_update: UpdateHandler,
    on_progress: ProgressHandler | None = None,
    max_streams: int = 64,
) -> None:
    player = _Player(transcriber, recordings, max_streams)
    while player.playing:
        now = time.monotonic()
        for stream_id, playing in list(player.playing.items()):
            player.deliver(stream_id, int((now - playing.origin) * SAMPLE_RATE), on_progress)
        updates = transcriber.step()
        _dispatch(updates, player, on_update)
        if not updates and not transcriber.pending_work():
            time.sleep(IDLE_WAIT_S)


def run_fast(
    transcriber: StreamingTranscriber,
    recordings: Iterable[Recording],
    on_update: UpdateHandler,
    on_progress: ProgressHandler | None = None,
    step_s: float = 1.0,
    max_streams: int = 64,
) -> None:
    player = _Player(transcriber, recordings, max_streams)
    step = int(step_s * SAMPLE_RATE)
    while player.playing:
        for stream_id, playing in list(player.playing.items()):
            player.deliver(stream_id, playing.sent + step, on_progress)
        while True:
            _dispatch(transcriber.step(), player, on_update)
            if not transcriber.pending_work():
                break
