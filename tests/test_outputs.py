"""Caption outputs: the transcript recorder and the JSON / SRT / VTT / TXT writers."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from bot.messages import CaptionUpdate, CommittedWord, Word, join_words
from bot.outputs import (
    CaptionState,
    Transcript,
    TranscriptRecorder,
    caption_cues,
    write_all,
    write_json,
    write_srt,
    write_txt,
    write_vtt,
    writers,
)
from bot.outputs.writers import text_width

# ---------------------------------------------------------------------------------------------
# Builders


def cw(text: str, start: float, end: float, p: float = 0.9) -> CommittedWord:
    return CommittedWord(text, start, end, p, first_seen_s=end + 0.5, emitted_s=end + 1.25)


def spoken(sentence: str, start: float = 0.0, step: float = 0.4) -> list[CommittedWord]:
    """Space-separated words, Whisper style (leading spaces), `step` seconds each."""
    return [
        cw(f" {token}", start + i * step, start + i * step + step * 0.8)
        for i, token in enumerate(sentence.split())
    ]


def transcript(words: list[CommittedWord], **kw) -> Transcript:
    fields = dict(
        stream_id="s1", audio="meeting.wav", duration_s=60.0, model="base",
        engine="faster-whisper", task="transcribe", language="en",
    )  # fmt: skip
    fields.update(kw)
    return Transcript(**fields, words=list(words))


def update(t_s: float, committed=(), tentative=(), language=None) -> CaptionUpdate:
    return CaptionUpdate("s1", t_s, tuple(committed), tuple(tentative), language=language)


def recorder() -> TranscriptRecorder:
    return TranscriptRecorder("s1", "meeting.wav", 60.0, "base", "faster-whisper", "transcribe")


ENGLISH = spoken(
    "Good morning everyone. Let's start with the budget. "
    "Revenue grew by twelve percent this quarter, which is more than we expected in March! "
    "Any questions?"
)
GERMAN = spoken("Grüße aus München. Die Straße ist schön, übrigens.")
JAPANESE = [
    cw("今日", 0.0, 0.4), cw("は", 0.4, 0.5), cw("いい", 0.5, 0.8), cw("天気", 0.8, 1.2),
    cw("です", 1.2, 1.5), cw("ね。", 1.5, 1.8), cw("散歩", 2.0, 2.4), cw("に", 2.4, 2.5),
    cw("行き", 2.5, 2.8), cw("ましょう", 2.8, 3.3), cw("か？", 3.3, 3.6),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Strict subtitle parsers

SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _check_times(cues: list[tuple[float, float, str]]) -> None:
    prev_end = 0.0
    for start, end, text in cues:
        assert start < end, f"cue must last: {start} --> {end}"
        assert start >= prev_end, f"cues overlap at {start} < {prev_end}"
        assert text.strip(), "cue text must not be empty"
        prev_end = end


def parse_srt(content: str) -> list[tuple[float, float, str]]:
    if content == "":
        return []
    assert content.endswith("\n\n")
    cues = []
    for expected_index, block in enumerate(content[:-2].split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(expected_index)
        m = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert m, f"bad SRT time line {lines[1]!r}"
        text_lines = lines[2:]
        assert text_lines and all(line.strip() for line in text_lines)
        cues.append((_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), "\n".join(text_lines)))
    _check_times(cues)
    return cues


def parse_vtt(content: str) -> list[tuple[float, float, str]]:
    assert content.startswith("WEBVTT\n\n")
    body = content[len("WEBVTT\n\n") :]
    if body == "":
        return []
    assert body.endswith("\n\n")
    cues = []
    for block in body[:-2].split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert m, f"bad VTT time line {lines[0]!r}"
        text_lines = lines[1:]
        assert text_lines and all(line.strip() and "-->" not in line for line in text_lines)
        text = "\n".join(text_lines).replace("&lt;", "<").replace("&gt;", ">")
        text = text.replace("&amp;", "&")
        cues.append((_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), text))
    _check_times(cues)
    return cues


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------
# Recorder


def test_recorder_appends_committed_words_and_records_what_the_viewer_saw():
    rec = recorder()
    rec.add(update(1.0, tentative=[Word(" Good", 0.0, 0.3)]))
    rec.add(update(2.0, committed=ENGLISH[:2], tentative=[Word(" every", 0.8, 1.0)]))
    rec.add(update(3.0, committed=ENGLISH[2:3]))

    t = rec.transcript
    assert t.words == ENGLISH[:3]
    assert t.text == "Good morning everyone."
    assert t.updates == [
        CaptionState(1.0, "", "Good"),
        CaptionState(2.0, "Good morning", "every"),
        CaptionState(3.0, "Good morning everyone.", ""),
    ]


def test_recorder_committed_text_is_append_only():
    rec = recorder()
    for i, w in enumerate(ENGLISH):
        rec.add(update(float(i), committed=[w], tentative=[Word(" maybe", 0, 0)]))
    states = rec.transcript.updates
    for before, after in zip(states, states[1:], strict=False):
        assert after.committed.startswith(before.committed)
    assert states[-1].committed == join_words(ENGLISH)


def test_recorder_skips_updates_that_change_nothing_visible():
    rec = recorder()
    rec.add(update(0.5))  # nothing on screen yet: same as the initial empty state
    rec.add(update(1.0, tentative=[Word(" Hello", 0.0, 0.4)]))
    rec.add(update(1.5, tentative=[Word(" Hello", 0.0, 0.45)]))  # new times, same text
    rec.add(update(2.0, committed=[cw(" Hello", 0.0, 0.4)]))
    rec.add(update(2.5))
    rec.add(update(3.0, language="en"))
    assert [u.t_s for u in rec.transcript.updates] == [1.0, 2.0]


def test_recorder_running_text_equals_join_words_for_any_spacing():
    words = [cw("  ", 0, 0), cw(" Hi", 0, 1), cw(",", 1, 1), cw(" ", 1, 1), cw("  ", 1, 1),
             cw(" there", 1, 2), *JAPANESE[:3], cw(" end. ", 4, 5)]  # fmt: skip
    rec = recorder()
    for i, w in enumerate(words):
        rec.add(update(float(i), committed=[w]))
        states = rec.transcript.updates
        assert (states[-1].committed if states else "") == join_words(words[: i + 1])
    assert rec.transcript.updates[-1].committed == join_words(words) == rec.transcript.text


def test_recorder_shares_unchanged_committed_text_between_states():
    rec = recorder()
    rec.add(update(1.0, committed=ENGLISH[:3], tentative=[Word(" Let's", 0, 0)]))
    rec.add(update(2.0, tentative=[Word(" Let's start", 0, 0)]))
    a, b = rec.transcript.updates
    assert a.committed is b.committed


def test_recorder_takes_the_language_from_updates_that_know_it():
    rec = TranscriptRecorder("s1", "a.wav", 1.0, "base", "e", "transcribe", language=None)
    rec.add(update(1.0, tentative=[Word(" Hallo", 0, 1)]))
    assert rec.transcript.language is None
    rec.add(update(2.0, tentative=[Word(" Hallo Welt", 0, 1)], language="de"))
    rec.add(update(3.0, committed=[cw(" Hallo", 0, 1)]))
    assert rec.transcript.language == "de"


def test_recorder_keeps_metadata_and_refuses_updates_of_other_streams():
    rec = TranscriptRecorder(
        "s1", "a.wav", 12.5, "small", "jax", "translate", language="fr", extra={"rtf": 0.1}
    )
    t = rec.transcript
    assert (t.stream_id, t.audio, t.duration_s, t.model, t.engine, t.task, t.language) == (
        "s1", "a.wav", 12.5, "small", "jax", "translate", "fr",
    )  # fmt: skip
    assert t.extra == {"rtf": 0.1}
    with pytest.raises(ValueError, match="s2"):
        rec.add(CaptionUpdate("s2", 1.0, (), ()))


# ---------------------------------------------------------------------------------------------
# Cues


def test_cues_break_after_sentence_ends():
    cues = caption_cues(ENGLISH[:8])
    assert [c.text for c in cues] == ["Good morning everyone.", "Let's start with the budget."]


def test_cues_break_after_cjk_sentence_ends_and_join_without_spaces():
    cues = caption_cues(JAPANESE)
    assert [c.text for c in cues] == ["今日はいい天気ですね。", "散歩に行きましょうか？"]


def test_cues_break_after_a_sentence_end_followed_by_a_closing_quote():
    words = [cw(' "Really?"', 0, 0.5), cw(" Yes.", 0.6, 1.0)]
    assert [c.text for c in caption_cues(words)] == ['"Really?"', "Yes."]


def test_marks_held_at_a_pause_close_the_word_before_them_in_cues():
    # The streaming policy writes a held word's closing marks in front of the next word
    # (". Now") and, at the end of a stream, as a lone word: cues still split there.
    words = [
        cw(" movable", 0.0, 0.4), cw(" types", 0.5, 0.9), cw(". Now", 1.0, 1.3),
        cw(" as", 1.4, 1.6), cw(" books", 1.7, 2.0), cw(".", 1.7, 2.0),
    ]  # fmt: skip
    cues = caption_cues(words)
    assert [c.text for c in cues] == ["movable types.", "Now as books."]
    assert cues[0].end == pytest.approx(0.9)


def test_cues_break_at_pauses_longer_than_max_gap():
    words = spoken("one two three") + spoken("four five", start=3.0)
    cues = caption_cues(words, max_gap_s=1.5)
    assert [c.text for c in cues] == ["one two three", "four five"]
    assert cues[1].start == pytest.approx(3.0)


def test_cues_break_before_exceeding_max_duration():
    words = spoken(" ".join(f"w{i}" for i in range(20)), step=0.5)
    cues = caption_cues(words, max_chars=200, max_duration_s=3.0)
    assert len(cues) > 1
    for cue in cues:
        assert cue.end - cue.start <= 3.0 + 1e-9


def test_cues_wrap_into_at_most_max_lines_of_max_chars():
    words = spoken("the quick brown fox jumps over the lazy dog " * 6, step=0.1)
    cues = caption_cues(words, max_chars=20, max_lines=2, max_duration_s=100)
    assert len(cues) > 1
    for cue in cues:
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= 2
        assert all(len(line) <= 20 for line in lines)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == join_words(words)


def test_cues_count_wide_characters_as_two_columns():
    assert text_width("abc") == 3
    assert text_width("天気") == 4
    kana = "あいうえおかきくけこさしすせそ"
    words = [cw(ch, i * 0.2, i * 0.2 + 0.2) for i, ch in enumerate(kana)]
    cues = caption_cues(words, max_chars=10, max_lines=1)
    assert [c.text for c in cues] == ["あいうえお", "かきくけこ", "さしすせそ"]


def test_a_word_wider_than_a_line_gets_a_cue_of_its_own():
    words = [cw(" a", 0, 0.2), cw(" " + "x" * 50, 0.3, 0.8), cw(" b", 0.9, 1.0)]
    cues = caption_cues(words, max_chars=10, max_lines=1)
    assert [c.text for c in cues] == ["a", "x" * 50, "b"]


def test_cue_times_span_their_words_audio_times():
    cues = caption_cues(ENGLISH[:3])
    assert (cues[0].start, cues[0].end) == (ENGLISH[0].start, ENGLISH[2].end)


def test_short_cues_last_at_least_min_duration_where_the_next_cue_allows():
    words = [cw(" Yes.", 1.0, 1.05), cw(" No.", 5.0, 5.02), cw(" Maybe.", 5.1, 5.5)]
    cues = caption_cues(words)
    assert (cues[0].start, cues[0].end) == (1.0, 1.3)
    assert (cues[1].start, cues[1].end) == (5.0, 5.1)  # stretched only up to the next cue
    assert (cues[2].start, cues[2].end) == (5.1, 5.5)


def test_cues_never_overlap_even_when_word_times_do():
    words = [cw(" One.", 0.0, 2.0), cw(" Two.", 1.5, 1.6), cw(" Three.", 1.0, 1.2)]
    cues = caption_cues(words)
    _check_times([(c.start, c.end, c.text) for c in cues])


def test_cue_invariants_hold_for_random_word_streams():
    rng = random.Random(7)
    vocab = ["alpha", "beta,", "gamma.", "delta?", "epsilon", "Grüße!", "天気", "です。", "zeta"]
    for _ in range(200):
        t, words = 0.0, []
        for _ in range(rng.randrange(0, 60)):
            t += rng.choice([0.0, 0.05, 0.3, 0.5, 2.0, -0.1])
            dur = rng.choice([0.0, 0.02, 0.3, 1.0, 7.0])
            words.append(cw(" " + rng.choice(vocab), max(t, 0.0), max(t, 0.0) + dur))
        cues = caption_cues(words)
        _check_times([(c.start, c.end, c.text) for c in cues])
        assert squash("".join(c.text for c in cues)) == squash(join_words(words))
        for c in cues:
            assert all(text_width(line) <= 42 or " " not in line for line in c.text.split("\n"))
            assert len(c.text.split("\n")) <= 2


# ---------------------------------------------------------------------------------------------
# Files


def test_srt_parses_back_and_holds_the_transcript_text(tmp_path: Path):
    t = transcript(ENGLISH)
    write_srt(t, tmp_path / "a.srt")
    cues = parse_srt((tmp_path / "a.srt").read_text(encoding="utf-8"))
    assert len(cues) == len(caption_cues(ENGLISH))
    assert " ".join(text.replace("\n", " ") for _, _, text in cues) == t.text


def test_vtt_parses_back_and_holds_the_transcript_text(tmp_path: Path):
    t = transcript(ENGLISH)
    write_vtt(t, tmp_path / "a.vtt")
    cues = parse_vtt((tmp_path / "a.vtt").read_text(encoding="utf-8"))
    assert len(cues) == len(caption_cues(ENGLISH))
    assert " ".join(text.replace("\n", " ") for _, _, text in cues) == t.text


def test_vtt_escapes_markup_characters(tmp_path: Path):
    t = transcript(spoken("R&D says x<y --> fine."))
    write_vtt(t, tmp_path / "a.vtt")
    content = (tmp_path / "a.vtt").read_text(encoding="utf-8")
    assert "R&amp;D" in content and "x&lt;y" in content
    assert [text for _, _, text in parse_vtt(content)] == ["R&D says x<y --> fine."]


def test_subtitle_times_use_two_digit_hours_and_allow_more(tmp_path: Path):
    words = [cw(" early.", 3723.456, 3724.0), cw(" late.", 360000.0, 360001.5)]
    write_srt(transcript(words), tmp_path / "a.srt")
    write_vtt(transcript(words), tmp_path / "a.vtt")
    srt = (tmp_path / "a.srt").read_text(encoding="utf-8")
    vtt = (tmp_path / "a.vtt").read_text(encoding="utf-8")
    assert "01:02:03,456 --> 01:02:04,000" in srt
    assert "100:00:00,000 --> 100:00:01,500" in srt
    assert "01:02:03.456 --> 01:02:04.000" in vtt
    assert parse_srt(srt)[1][:2] == (360000.0, 360001.5)


def test_json_round_trips_metadata_words_updates_and_stats(tmp_path: Path):
    rec = TranscriptRecorder(
        "s1", "meeting.wav", 61.23456, "base", "faster-whisper", "transcribe",
        extra={"rtf": 0.123, "latency_s": {"p50": 1.5}},
    )  # fmt: skip
    rec.add(update(1.0, tentative=[Word(" Good", 0.0, 0.3)]))
    rec.add(update(2.0, committed=ENGLISH[:3], language="en"))
    write_json(rec.transcript, tmp_path / "a.json")

    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert {"stream_id", "audio", "duration_s", "model", "engine", "task", "language", "text",
            "words", "updates", "stats"} <= data.keys()  # fmt: skip
    assert data["stream_id"] == "s1" and data["audio"] == "meeting.wav"
    assert data["duration_s"] == 61.235
    assert (data["model"], data["engine"], data["task"]) == ("base", "faster-whisper", "transcribe")
    assert data["language"] == "en"
    assert data["text"] == "Good morning everyone."
    assert data["stats"] == {"rtf": 0.123, "latency_s": {"p50": 1.5}}
    assert data["words"][0] == {
        "text": "Good", "start": 0.0, "end": 0.32, "probability": 0.9,
        "emitted_s": 1.57, "first_seen_s": 0.82,
    }  # fmt: skip
    assert [w["text"] for w in data["words"]] == ["Good", "morning", "everyone."]
    assert data["updates"] == [
        {"t_s": 1.0, "committed": "", "tentative": "Good"},
        {"t_s": 2.0, "committed": "Good morning everyone.", "tentative": ""},
    ]


def test_json_rounds_floats_to_milliseconds(tmp_path: Path):
    t = transcript([CommittedWord(" x", 1.23456, 2.00049, 0.987654, 2.5556, 3.1234567)])
    write_json(t, tmp_path / "a.json")
    (w,) = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["words"]
    assert (w["start"], w["end"], w["probability"]) == (1.235, 2.0, 0.988)
    assert (w["first_seen_s"], w["emitted_s"]) == (2.556, 3.123)


def test_txt_starts_a_paragraph_after_pauses_longer_than_two_seconds(tmp_path: Path):
    words = spoken("Hello there. How are you?") + spoken("Fine. Thanks.", start=10.0)
    write_txt(transcript(words), tmp_path / "a.txt")
    content = (tmp_path / "a.txt").read_text(encoding="utf-8")
    assert content == "Hello there. How are you?\n\nFine. Thanks.\n"


def test_an_empty_transcript_writes_valid_empty_files(tmp_path: Path):
    paths = write_all(transcript([]), tmp_path, "empty")
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["words"] == []
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["text"] == ""
    assert paths["srt"].read_text(encoding="utf-8") == ""
    assert paths["vtt"].read_text(encoding="utf-8") == "WEBVTT\n\n"
    assert paths["txt"].read_text(encoding="utf-8") == ""
    assert parse_srt("") == [] and parse_vtt("WEBVTT\n\n") == []


@pytest.mark.parametrize("words", [GERMAN, JAPANESE], ids=["german", "japanese"])
def test_unicode_survives_every_format(tmp_path: Path, words: list[CommittedWord]):
    t = transcript(words)
    paths = write_all(t, tmp_path, "u")
    data = json.loads(paths["json"].read_bytes().decode("utf-8"))
    assert data["text"] == t.text
    assert "\\u" not in paths["json"].read_text(encoding="utf-8")  # stored as text, not escaped
    for fmt, parse in (("srt", parse_srt), ("vtt", parse_vtt)):
        cues = parse(paths[fmt].read_text(encoding="utf-8"))
        assert squash("".join(text for _, _, text in cues)) == squash(t.text)
    assert squash(paths["txt"].read_text(encoding="utf-8")) == squash(t.text)


def test_japanese_text_keeps_no_spaces():
    assert transcript(JAPANESE).text == "今日はいい天気ですね。散歩に行きましょうか？"


def test_write_all_writes_four_files_named_by_stem_and_no_temp_files(tmp_path: Path):
    out = tmp_path / "new" / "dir"
    paths = write_all(transcript(ENGLISH), out, "meeting")
    assert paths == {fmt: out / f"meeting.{fmt}" for fmt in ("json", "srt", "vtt", "txt")}
    assert sorted(p.name for p in out.iterdir()) == [
        "meeting.json", "meeting.srt", "meeting.txt", "meeting.vtt",
    ]  # fmt: skip


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "a.srt"
    write_srt(transcript(ENGLISH[:3]), path)
    old = path.read_text(encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(writers.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_srt(transcript(ENGLISH), path)
    assert path.read_text(encoding="utf-8") == old
    assert list(tmp_path.iterdir()) == [path]


def test_rewriting_replaces_the_whole_file(tmp_path: Path):
    path = tmp_path / "a.txt"
    write_txt(transcript(ENGLISH), path)
    write_txt(transcript(ENGLISH[:3]), path)
    assert path.read_text(encoding="utf-8") == "Good morning everyone.\n"
    assert list(tmp_path.iterdir()) == [path]
