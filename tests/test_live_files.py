"""Caption files written during the meeting are valid at every moment and complete at the end."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, EndOfStream
from bot.outputs.live_files import LiveCaptionFiles
from bot.streaming.transcriber import StreamingTranscriber

SRT_CUE = re.compile(
    r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+?)(?:\n\n|\Z)", re.S
)


@pytest.fixture(scope="module")
def jfk_updates(tiny_engine) -> list[CaptionUpdate]:
    """The real caption updates of the bundled sample, streamed through tiny.en."""
    audio = load_audio(bundled_sample())
    transcriber = StreamingTranscriber(tiny_engine, clock="audio")
    transcriber.open("meeting", task="transcribe", language="en")
    updates: list[CaptionUpdate] = []
    step = SAMPLE_RATE // 2
    for i in range(0, len(audio), step):
        transcriber.feed(AudioChunk("meeting", audio[i : i + step], i / SAMPLE_RATE))
        updates += transcriber.step()
    transcriber.feed(EndOfStream("meeting"))
    while transcriber.active:
        updates += transcriber.step()
    assert sum(len(u.committed) for u in updates) > 15
    return updates


def _srt_cues(text: str) -> list[tuple[str, str, str]]:
    cues = [(m[2], m[3], m[4]) for m in SRT_CUE.finditer(text)]
    assert "".join(m[0] for m in SRT_CUE.finditer(text)).strip() == text.strip()
    return cues


def _check_valid(files: LiveCaptionFiles, words_so_far: int) -> dict:
    data = json.loads(files.paths["json"].read_text())
    assert len(data["words"]) <= words_so_far
    srt = files.paths["srt"].read_text()
    cues = _srt_cues(srt) if srt.strip() else []
    assert all(start <= end for start, end, _ in cues)
    vtt = files.paths["vtt"].read_text()
    assert vtt.startswith("WEBVTT")
    return data


def test_files_parse_while_the_meeting_runs_and_hold_every_word_at_the_end(
    tmp_path: Path, jfk_updates
) -> None:
    files = LiveCaptionFiles(tmp_path, "meeting", meta={"model": "tiny.en"}, flush_every_s=0.0)
    committed = 0
    seen_running = 0
    for update in jfk_updates:
        files.add(update)
        committed += len(update.committed)
        if committed:
            data = _check_valid(files, committed)
            assert data["final"] is False or update.final
            seen_running += 1
    assert seen_running > 3
    files.close()
    data = json.loads(files.paths["json"].read_text())
    assert data["final"] is True
    assert len(data["words"]) == committed
    assert data["model"] == "tiny.en" and data["language"] == "en"
    text = " ".join(cue for _, _, cue in _srt_cues(files.paths["srt"].read_text()))
    assert text.split() == data["text"].split()
    assert files.paths["txt"].read_text().split() == data["text"].split()
    deltas = data["caption_updates"]
    assert "".join(d["committed"] for d in deltas).split() == text.split()


def test_writes_are_throttled_but_nothing_is_lost_at_close(tmp_path: Path, jfk_updates) -> None:
    files = LiveCaptionFiles(tmp_path, "meeting", formats=("json", "srt"), flush_every_s=3600)
    for update in jfk_updates:
        files.add(update)
    assert files.writes == 1  # the first committed words, then nothing for an hour
    files.close()
    assert files.writes == 2
    words = json.loads((tmp_path / "meeting.json").read_text())["words"]
    assert len(words) == sum(len(u.committed) for u in jfk_updates)
    assert not (tmp_path / "meeting.vtt").exists()


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="docx"):
        LiveCaptionFiles(tmp_path, "m", formats=("json", "docx"))


def test_a_participants_files_name_the_speaker(tmp_path: Path, jfk_updates) -> None:
    files = LiveCaptionFiles(tmp_path, "meeting-alice", flush_every_s=0.0)
    for update in jfk_updates:
        files.add(replace(update, speaker="Alice <host>"))
    files.close()
    data = json.loads(files.paths["json"].read_text())
    assert data["speaker"] == "Alice <host>"
    cues = files.paths["vtt"].read_text().split("\n\n")[1:-1]
    assert cues and all("\n<v Alice &lt;host&gt;>" in cue for cue in cues), cues
    # the SRT stays plain text: its players would show a voice tag verbatim
    assert "Alice" not in files.paths["srt"].read_text()
