"""Drive a `StreamingTranscriber` with recordings, as live audio or as fast as it decodes.

`run_realtime` delivers each recording at real-time speed on the wall clock, with the time
spent decoding counted, exactly as a live meeting would arrive: whatever audio became due
while the engine was busy is handed over at once before the next round. `run_fast` delivers a
fixed step of audio per round and uses audio time as the stream clock, which measures the
policy itself, independent of the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bot.asr.engine import Task
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, EndOfStream
from bot.streaming.transcriber import StreamingTranscriber

IDLE_WAIT_S = 0.02


@dataclass(frozen=True)
class Recording:
    stream_id: str
    audio: np.ndarray
    task: Task = "transcribe"
    language: str | None = None


UpdateHandler = Callable[[CaptionUpdate], None]
ProgressHandler = Callable[[str, float], None]


class _Delivery:
    """How much of each recording has been handed to the transcriber."""

    def __init__(self, transcriber: StreamingTranscriber, recordings: list[Recording]) -> None:
        self._transcriber = transcriber
        self._recordings = recordings
        self._sent = {r.stream_id: 0 for r in recordings}
        self._ended: set[str] = set()

    def deliver(self, recording: Recording, until_sample: int) -> float:
        """Send audio up to `until_sample`; end the stream at the end. Returns seconds sent."""
        sent = self._sent[recording.stream_id]
        until_sample = min(until_sample, len(recording.audio))
        if until_sample > sent:
            samples = recording.audio[sent:until_sample]
            self._transcriber.feed(AudioChunk(recording.stream_id, samples, sent / SAMPLE_RATE))
            self._sent[recording.stream_id] = until_sample
        if until_sample >= len(recording.audio) and recording.stream_id not in self._ended:
            self._transcriber.feed(EndOfStream(recording.stream_id))
            self._ended.add(recording.stream_id)
        return self._sent[recording.stream_id] / SAMPLE_RATE


def run_realtime(
    transcriber: StreamingTranscriber,
    recordings: list[Recording],
    on_update: UpdateHandler,
    on_progress: ProgressHandler | None = None,
) -> None:
    origin = time.monotonic()
    for recording in recordings:
        transcriber.open(recording.stream_id, recording.task, recording.language, origin=origin)
    delivery = _Delivery(transcriber, recordings)
    while transcriber.active:
        due = int((time.monotonic() - origin) * SAMPLE_RATE)
        for recording in recordings:
            seconds = delivery.deliver(recording, due)
            if on_progress:
                on_progress(recording.stream_id, seconds)
        updates = transcriber.step()
        for update in updates:
            on_update(update)
        if not updates and not transcriber.pending_work():
            time.sleep(IDLE_WAIT_S)


def run_fast(
    transcriber: StreamingTranscriber,
    recordings: list[Recording],
    on_update: UpdateHandler,
    on_progress: ProgressHandler | None = None,
    step_s: float = 1.0,
) -> None:
    for recording in recordings:
        transcriber.open(recording.stream_id, recording.task, recording.language)
    delivery = _Delivery(transcriber, recordings)
    step = int(step_s * SAMPLE_RATE)
    rounds = 0
    while transcriber.active:
        rounds += 1
        for recording in recordings:
            seconds = delivery.deliver(recording, rounds * step)
            if on_progress:
                on_progress(recording.stream_id, seconds)
        while True:
            updates = transcriber.step()
            for update in updates:
                on_update(update)
            if not transcriber.pending_work():
                break
