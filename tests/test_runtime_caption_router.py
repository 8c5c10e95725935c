"""The caption router: each stream's updates reach that stream's outputs, shared outputs all."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from bot.messages import CaptionsDrawn, CaptionUpdate, CommittedWord, Word
from bot.outputs.live_files import LiveCaptionFiles
from bot.runtime.caption_router import CaptionRouter


def _word(text: str, start: float) -> CommittedWord:
    return CommittedWord(text, start, start + 0.4, 0.9, start + 0.6, start + 1.2)


def _update(stream: str, t_s: float, *texts: str, speaker: str | None = None) -> CaptionUpdate:
    words = tuple(_word(text, t_s - 1.5 + 0.5 * i) for i, text in enumerate(texts))
    return CaptionUpdate(stream, t_s, words, (Word(" and", t_s, t_s + 0.2),), "en", speaker=speaker)


class KeptUpdates:
    """A shared output that keeps what it got (as the overlay server does, keyed by stream)."""

    def __init__(self) -> None:
        self.got: list[CaptionUpdate] = []
        self.closed = 0

    def add(self, update: CaptionUpdate) -> None:
        self.got.append(update)

    def close(self) -> None:
        self.closed += 1


def test_every_stream_gets_its_own_files_and_shared_outputs_get_everything(tmp_path: Path):
    files: dict[str, LiveCaptionFiles] = {}

    def open_files(stream_id: str) -> list[LiveCaptionFiles]:
        files[stream_id] = LiveCaptionFiles(tmp_path, f"meeting-{stream_id}", flush_every_s=0.0)
        return [files[stream_id]]

    shared = KeptUpdates()
    router = CaptionRouter(open_files, shared=[shared])
    updates = [
        _update("ana", 2.0, " Good", " morning.", speaker="Ana"),
        _update("ben", 2.5, " Hello", " there.", speaker="Ben"),
        _update("ana", 4.0, " Shall", " we?", speaker="Ana"),
    ]
    for update in updates:
        router.route(update)
    router.close()
    assert shared.got == updates and shared.closed == 1
    assert sorted(files) == ["ana", "ben"]
    ana = json.loads((tmp_path / "meeting-ana.json").read_text())
    ben = json.loads((tmp_path / "meeting-ben.json").read_text())
    assert ana["text"] == "Good morning. Shall we?" and ana["final"] is True
    assert ben["text"] == "Hello there."
    assert [w.text for w in router.streams["ana"].words] == [" Good", " morning.", " Shall", " we?"]


def test_a_compositor_that_is_behind_loses_updates_counted_and_the_files_lose_none(
    tmp_path: Path,
) -> None:
    router = CaptionRouter(lambda sid: [LiveCaptionFiles(tmp_path, sid, flush_every_s=0.0)])
    captions: queue.Queue = queue.Queue(maxsize=2)
    updates = [_update("m", 2.0 + i, f" w{i}") for i in range(5)]
    asr: queue.Queue = queue.Queue()
    for update in updates:
        asr.put(update)
    assert router.drain(asr, captions, timeout=0.0) == 5
    assert [captions.get_nowait() for _ in range(2)] == updates[:2]
    assert router.dropped_caption_updates == 3
    router.close()
    assert json.loads((tmp_path / "m.json").read_text())["text"] == "w0 w1 w2 w3 w4"


def test_a_drawn_frame_records_how_late_each_newly_shown_word_was() -> None:
    router = CaptionRouter(lambda sid: [])
    router.route(_update("m", 2.0, " one", " two"))
    origin_wall = 1000.0
    router.record_drawn(CaptionsDrawn("m", origin_wall + 2.1, 1, 1), origin_wall)
    router.record_drawn(CaptionsDrawn("m", origin_wall + 2.3, 2, 0), origin_wall)
    router.record_drawn(CaptionsDrawn("m", origin_wall + 2.5, 2, 0), origin_wall)
    words = router.streams["m"].words
    expected = [2.1 - words[0].end, 2.3 - words[1].end]
    assert router.streams["m"].shown_latency_s == pytest.approx(expected)
