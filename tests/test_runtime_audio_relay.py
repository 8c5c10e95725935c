"""The audio relay between capture and the ASR stage: the one place where the bot drops audio."""

from __future__ import annotations

import queue

import numpy as np
import pytest

from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.messages import SAMPLE_RATE, AudioChunk, EndOfStream
from bot.runtime.audio_relay import AudioRelay


@pytest.fixture(scope="module")
def jfk_chunks() -> list[AudioChunk]:
    """The bundled sample as the capture delivers it: 0.1 s chunks on the audio clock."""
    audio = load_audio(bundled_sample())
    step = SAMPLE_RATE // 10
    return [
        AudioChunk("meeting", audio[i : i + step], i / SAMPLE_RATE)
        for i in range(0, len(audio) - step + 1, step)
    ]


def _seconds(chunks: list[AudioChunk]) -> float:
    return sum(len(c.samples) for c in chunks) / SAMPLE_RATE


def test_a_stage_that_keeps_up_gets_every_chunk_in_order(jfk_chunks) -> None:
    relay = AudioRelay(queue_s=1.0)
    asr: queue.Queue = queue.Queue(maxsize=20)
    heard = []
    for chunk in jfk_chunks:
        captured: queue.Queue = queue.Queue()
        captured.put(chunk)
        relay.relay(captured, asr)
        heard.append(asr.get_nowait())
    assert heard == jfk_chunks
    assert relay.dropped == {} and relay.backlog_s == 0.0


def test_behind_it_drops_the_oldest_audio_beyond_queue_s_and_counts_exactly_that(
    jfk_chunks,
) -> None:
    relay = AudioRelay(queue_s=1.0)
    asr: queue.Queue = queue.Queue(maxsize=20)  # 2 s the stalled stage never takes
    captured: queue.Queue = queue.Queue()
    for message in [*jfk_chunks, EndOfStream("meeting")]:
        captured.put(message)
        relay.relay(captured, asr)
    assert relay.backlog_s == pytest.approx(1.0)
    sent = [asr.get_nowait() for _ in range(20)]  # the stage wakes up
    relay.relay(None, asr)
    rest = []
    while not asr.empty():
        rest.append(asr.get_nowait())
    heard = [m for m in sent + rest if isinstance(m, AudioChunk)]
    assert isinstance(rest[-1], EndOfStream), "an end of stream is never dropped"
    assert heard[:20] == jfk_chunks[:20], "what the stage had taken is kept"
    assert heard[20:] == jfk_chunks[-10:], "then the newest second, as queue_s says"
    dropped = relay.dropped["meeting"]
    lost = jfk_chunks[20:-10]
    assert dropped.chunks == len(lost) == relay.dropped_chunks
    assert dropped.seconds == pytest.approx(_seconds(jfk_chunks) - _seconds(heard), abs=1e-9)


def test_a_restarted_stage_hears_again_what_was_not_committed(jfk_chunks) -> None:
    relay = AudioRelay(queue_s=30.0)
    asr: queue.Queue = queue.Queue()
    captured: queue.Queue = queue.Queue()
    for chunk in jfk_chunks[:50]:
        captured.put(chunk)
    relay.relay(captured, asr)
    seconds = relay.replay_uncommitted({"meeting": 3.05})
    replay: queue.Queue = queue.Queue()
    relay.relay(None, replay)
    again = [replay.get_nowait() for _ in range(replay.qsize())]
    assert again == [c for c in jfk_chunks[:50] if c.start + 0.1 > 3.05]
    assert again[0].start == pytest.approx(3.0)
    assert seconds == pytest.approx(2.0)
    assert np.array_equal(again[-1].samples, jfk_chunks[49].samples)
