"""Transcript files: JSON (everything), SRT and VTT subtitles (cues), plain text (paragraphs).

Every file is written atomically: to a temporary file in the same folder, then renamed over the
target, so a reader sees either the old file or the whole new one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.messages import CommittedWord, join_words
from bot.outputs.transcript import Transcript
from bot.text import closing_marks, ends_sentence

logger = logging.getLogger(__name__)

MIN_CUE_DURATION_S = 0.3
PARAGRAPH_GAP_S = 2.0


@dataclass(frozen=True)
class Cue:
    """One subtitle: audio times in seconds and text with '\\n' between lines."""

    start: float
    end: float
    text: str


# ---------------------------------------------------------------------------------------------
# Cues


def text_width(text: str) -> int:
    """Display width in columns: wide (CJK) characters count two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


def wrap_words(words: Sequence[CommittedWord], max_chars: int) -> list[str]:
    """Greedy line wrap at word boundaries; a word wider than a line gets a line of its own."""
    lines: list[list[CommittedWord]] = []
    for w in words:
        if lines and text_width(join_words(lines[-1] + [w])) <= max_chars:
            lines[-1].append(w)
        else:
            lines.append([w])
    return [join_words(line) for line in lines]


def caption_cues(
    words: Sequence[CommittedWord],
    max_chars: int = 42,
    max_lines: int = 2,
    max_duration_s: float = 6.0,
    max_gap_s: float = 1.5,
) -> list[Cue]:
    """Group words greedily into subtitle cues.

    A cue ends after a sentence-ending word, before a pause longer than `max_gap_s`, and before
    a word that would make it last longer than `max_duration_s` or need more than `max_lines`
    lines of `max_chars` columns. Cues span their words' audio times, never overlap, and last
    at least `MIN_CUE_DURATION_S` where the next cue leaves room.
    """
    groups: list[list[CommittedWord]] = []
    current: list[CommittedWord] = []
    for w in _marks_on_the_word_they_close(words):
        if not w.text.strip():
            continue
        if current and (
            w.start - current[-1].end > max_gap_s
            or w.end - current[0].start > max_duration_s
            or len(wrap_words(current + [w], max_chars)) > max_lines
        ):
            groups.append(current)
            current = []
        current.append(w)
        if ends_sentence(w.text):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return _timed_cues(groups, max_chars)


def _marks_on_the_word_they_close(words: Sequence[CommittedWord]) -> list[CommittedWord]:
    """Words with the punctuation the streaming policy wrote in front of the next word (it holds
    a word's closing marks at a pause until it hears how the sentence goes on: ". Now", or a
    lone "." at the end) moved back onto the word they close, so cues split at sentence ends."""
    attached: list[CommittedWord] = []
    for w in words:
        marks, bare = closing_marks(w.text)
        if attached and marks:
            attached[-1] = replace(attached[-1], text=attached[-1].text + marks)
            if not bare.strip():
                continue
            w = replace(w, text=bare)
        attached.append(w)
    return attached


def _timed_cues(groups: list[list[CommittedWord]], max_chars: int) -> list[Cue]:
    """Cues for word groups, with times settled in whole milliseconds (as subtitles store them)."""
    spans = [(_ms(g[0].start), _ms(max(w.end for w in g))) for g in groups]
    min_ms = round(MIN_CUE_DURATION_S * 1000)
    cues: list[Cue] = []
    prev_end = 0
    for i, (group, (start, end)) in enumerate(zip(groups, spans, strict=True)):
        start = max(start, prev_end)
        end = max(end, start + min_ms)
        next_start = spans[i + 1][0] if i + 1 < len(spans) else None
        if next_start is not None and next_start > start:
            end = min(end, next_start)
        # else the next cue starts earlier than this one can: it gets pushed back to `end`.
        cues.append(Cue(start / 1000, end / 1000, "\n".join(wrap_words(group, max_chars))))
        prev_end = end
    return cues


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


# ---------------------------------------------------------------------------------------------
# Rendering


def _timestamp(seconds: float, decimal_mark: str) -> str:
    ms = _ms(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{ms:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm` times, a blank line after each."""
    return "".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n\n"
        for i, c in enumerate(cues, start=1)
    )


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_text(cues: Sequence[Cue], speaker: str | None = None) -> str:
    """WebVTT: a header, then `HH:MM:SS.mmm` cues with markup characters escaped; with a
    speaker, each cue is a voice span (`<v Alice>...`) that players show as the speaker."""
    voice = f"<v {_vtt_escape(speaker)}>" if speaker else ""
    body = "".join(
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{voice}{_vtt_escape(c.text)}\n\n"
        for c in cues
    )
    return "WEBVTT\n\n" + body


def paragraphs(words: Sequence[CommittedWord], gap_s: float = PARAGRAPH_GAP_S) -> list[str]:
    """The text split into paragraphs wherever speech pauses longer than `gap_s`."""
    result: list[str] = []
    current: list[CommittedWord] = []
    for w in words:
        if current and w.start - current[-1].end > gap_s:
            result.append(join_words(current))
            current = []
        current.append(w)
    if current:
        result.append(join_words(current))
    return [p for p in result if p]


def txt_text(t: Transcript, gap_s: float = PARAGRAPH_GAP_S) -> str:
    """Plain text: one line per paragraph, a blank line between paragraphs."""
    paras = paragraphs(t.words, gap_s)
    return "\n\n".join(paras) + "\n" if paras else ""


def _r3(x: float) -> float:
    return round(float(x), 3)


def json_dict(t: Transcript) -> dict[str, Any]:
    """The transcript as plain JSON values (times rounded to milliseconds)."""
    return {
        "stream_id": t.stream_id,
        "audio": t.audio,
        "duration_s": _r3(t.duration_s),
        "model": t.model,
        "engine": t.engine,
        "task": t.task,
        "language": t.language,
        "speaker": t.speaker,
        "text": t.text,
        "words": [
            {
                "text": w.text.strip(),
                "start": _r3(w.start),
                "end": _r3(w.end),
                "probability": _r3(w.probability),
                "emitted_s": _r3(w.emitted_s),
                "first_seen_s": _r3(w.first_seen_s),
            }
            for w in t.words
        ],
        "updates": [
            {"t_s": _r3(u.t_s), "committed": u.committed, "tentative": u.tentative}
            for u in t.updates
        ],
        "stats": json_safe(t.extra),
    }


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN and infinities (e.g. latency of a transcript without words)
    become null, tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays (common in stats) as plain values."""
    for method in ("item", "tolist"):
        if callable(getattr(obj, method, None)):
            return getattr(obj, method)()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# ---------------------------------------------------------------------------------------------
# Files


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text so that `path` is never seen half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote %s (%d chars)", path, len(text))


def write_json(t: Transcript, path: Path) -> None:
    """The whole transcript as UTF-8 JSON (see `json_dict`)."""
    text = json.dumps(
        json_dict(t), ensure_ascii=False, indent=1, default=_json_default, allow_nan=False
    )
    write_text_atomic(path, text + "\n")


def write_srt(t: Transcript, path: Path) -> None:
    """Committed words as SubRip subtitles."""
    write_text_atomic(path, srt_text(caption_cues(t.words)))


def write_vtt(t: Transcript, path: Path) -> None:
    """Committed words as WebVTT subtitles."""
    write_text_atomic(path, vtt_text(caption_cues(t.words), t.speaker))


def write_txt(t: Transcript, path: Path) -> None:
    """The final text in paragraphs."""
    write_text_atomic(path, txt_text(t))


_WRITERS = {"json": write_json, "srt": write_srt, "vtt": write_vtt, "txt": write_txt}


def write_all(t: Transcript, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.json/.srt/.vtt/.txt` into `out_dir` (created if missing); paths by format."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt, write in _WRITERS.items():
        paths[fmt] = out_dir / f"{stem}.{fmt}"
        write(t, paths[fmt])
    logger.info("wrote %s transcript to %s/%s.{%s}", t.stream_id, out_dir, stem, ",".join(paths))
    return paths
