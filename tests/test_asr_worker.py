"""The ASR worker process body: chunks from a queue in, caption updates out, resumable."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from conftest import english_wer

from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.config import load_config
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, CommittedWord, EndOfStream
from bot.runtime.asr_stage import AsrWorker

JFK = (
    "And so my fellow Americans, ask not what your country can do for you,"
    " ask what you can do for your country."
)


def _config():
    return load_config(None, {"engine.model": "tiny.en", "task": "transcribe", "language": "en"})


def _chunks(audio: np.ndarray, stream_id: str, start: float = 0.0, chunk_s: float = 0.5):
    step = round(chunk_s * SAMPLE_RATE)
    for i in range(0, len(audio), step):
        yield AudioChunk(stream_id, audio[i : i + step], start + i / SAMPLE_RATE)


def _run(worker: AsrWorker, messages: list) -> list[CaptionUpdate]:
    chunks: queue.Queue = queue.Queue()
    updates: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    for message in messages:
        chunks.put(message)
    worker.run(chunks, updates, threading.Event(), events)
    out = []
    while not updates.empty():
        out.append(updates.get())
    return out


def _text(updates: list[CaptionUpdate]) -> str:
    return "".join(w.text for u in updates for w in u.committed).strip()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(bundled_sample())


def test_worker_captions_queued_audio_and_stops_when_every_stream_ended(tiny_engine, jfk) -> None:
    worker = AsrWorker(tiny_engine, _config(), time.monotonic)
    updates = _run(worker, [*_chunks(jfk, "meeting"), EndOfStream("meeting")])
    assert updates[-1].final
    assert english_wer(JFK, _text(updates)) < 0.15


def test_worker_serves_several_streams_from_one_queue(tiny_engine, jfk) -> None:
    worker = AsrWorker(tiny_engine, _config(), time.monotonic)
    a, b = list(_chunks(jfk, "room-a")), list(_chunks(jfk[: 6 * SAMPLE_RATE], "room-b"))
    interleaved = [m for pair in zip(a, b + [None] * len(a)) for m in pair if m is not None]
    updates = _run(worker, [*interleaved, EndOfStream("room-a"), EndOfStream("room-b")])
    text_a = _text([u for u in updates if u.stream_id == "room-a"])
    text_b = _text([u for u in updates if u.stream_id == "room-b"])
    assert english_wer(JFK, text_a) < 0.15
    assert text_b and text_b.lower().startswith("and so my fellow americans")
    assert worker.report().counters["streams"] == 2


def test_a_resumed_stream_does_not_repeat_its_committed_words(tiny_engine, jfk) -> None:
    """A restarted worker gets the committed words and the audio from where it stands."""
    first = AsrWorker(tiny_engine, _config(), time.monotonic)
    before = _run(first, [*_chunks(jfk[: 5 * SAMPLE_RATE], "m"), EndOfStream("m")])
    history: tuple[CommittedWord, ...] = tuple(w for u in before for w in u.committed)
    assert history, "the first worker committed nothing"
    # The new worker re-hears the last 2 s before the cut, as after a crash mid-buffer.
    resume_at = 3.0
    second = AsrWorker(tiny_engine, _config(), time.monotonic, resume={"m": history})
    rest = jfk[round(resume_at * SAMPLE_RATE) :]
    after = _run(second, [*_chunks(rest, "m", start=resume_at), EndOfStream("m")])
    new_words = [w for u in after for w in u.committed]
    assert new_words and all(w.start >= resume_at - 0.1 for w in new_words)
    whole = _text(before) + " " + _text(after)
    assert english_wer(JFK, whole) < 0.2


def test_a_gap_in_the_audio_clock_keeps_word_times_on_the_stream_clock(tiny_engine, jfk) -> None:
    worker = AsrWorker(tiny_engine, _config(), time.monotonic)
    cut = round(5.0 * SAMPLE_RATE)
    messages = [
        *_chunks(jfk[:cut], "m"),
        *_chunks(jfk[cut:], "m", start=5.0 + 3.0),
        EndOfStream("m"),
    ]
    updates = _run(worker, messages)
    words = [w for u in updates for w in u.committed]
    late = [w for w in words if "country" in w.text.lower()]
    assert late and late[-1].end > 11.0 + 2.0  # the last word ends ~10.6 s in, + the 3 s gap
    assert worker.report().counters["gaps_filled_s"] == pytest.approx(3.0, abs=0.01)


def test_stopping_commits_the_tentative_words_without_waiting(tiny_engine, jfk) -> None:
    worker = AsrWorker(tiny_engine, _config(), time.monotonic)
    for chunk in _chunks(jfk[: 4 * SAMPLE_RATE], "m"):
        worker.feed(chunk)
    shown: list[CaptionUpdate] = []
    for _ in range(6):
        shown += worker.step()
    visible = _text(shown) + " " + " ".join(w.text for w in shown[-1].tentative)
    flushed = worker.flush()
    assert flushed and flushed[-1].final and not flushed[-1].tentative
    assert _text(shown + flushed).split() == visible.split()
