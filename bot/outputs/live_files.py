"""Caption files written while the meeting runs: valid on disk at every moment.

Each write replaces a file atomically, so a reader (or a bot killed mid-meeting) always finds a
complete SRT/VTT/JSON/TXT holding every word committed up to the last write. Writes happen at
most once per `flush_every_s` while words are committed, and once more at `close()` (which
marks the JSON `"final": true`). The JSON keeps the caption states as deltas under
`caption_updates` (the text an update committed, and the tentative tail it showed), so a long
meeting costs memory linear in its length; writing takes at most 5% of the time.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from bot.messages import CaptionUpdate, join_words
from bot.outputs.transcript import Transcript
from bot.outputs.writers import (
    caption_cues,
    json_dict,
    json_safe,
    srt_text,
    txt_text,
    vtt_text,
    write_text_atomic,
)

logger = logging.getLogger(__name__)

FORMATS = ("json", "srt", "vtt", "txt")
# Writing may take at most this share of the time: long meetings write less often.
WRITE_SHARE = 0.05


class LiveCaptionFiles:
    """`<out_dir>/<stem>.{json,srt,vtt,txt}` of one stream, kept current as updates arrive."""

    def __init__(
        self,
        out_dir: Path,
        stem: str,
        formats: tuple[str, ...] = FORMATS,
        meta: dict[str, Any] | None = None,
        flush_every_s: float = 1.0,
    ) -> None:
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown caption formats {sorted(unknown)}: use {FORMATS}")
        meta = dict(meta or {})
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {fmt: self.out_dir / f"{stem}.{fmt}" for fmt in formats}
        self.flush_every_s = flush_every_s
        self.transcript = Transcript(
            stream_id=str(meta.pop("stream_id", stem)),
            audio=str(meta.pop("audio", "")),
            duration_s=0.0,
            model=str(meta.pop("model", "")),
            engine=str(meta.pop("engine", "")),
            task=str(meta.pop("task", "")),
            extra=meta,
        )
        self._deltas: list[dict[str, Any]] = []
        self._dirty = False
        self._last_write = float("-inf")
        self._interval = flush_every_s
        self._closed = False
        self.writes = 0

    def add(self, update: CaptionUpdate) -> None:
        t = self.transcript
        t.words.extend(update.committed)
        t.language = update.language or t.language
        if update.speaker and update.speaker != t.speaker:
            t.speaker = update.speaker
            self._dirty = True
        t.duration_s = max(t.duration_s, update.t_s)
        self._deltas.append(
            {
                "t_s": round(update.t_s, 3),
                # Whisper's spacing kept ("" + " Ask" + " not" + ", what"): the deltas
                # concatenated are the committed text, held punctuation included.
                "committed": "".join(w.text for w in update.committed),
                "tentative": join_words(update.tentative),
            }
        )
        if update.committed or update.final:
            self._dirty = True
        if self._dirty and time.monotonic() - self._last_write >= self._interval:
            self.flush()

    def update_stats(self, values: dict[str, Any]) -> None:
        """Merge counters into the JSON's `stats` (e.g. the audio the bot dropped); they are
        written with the next write."""
        extra = self.transcript.extra
        if any(extra.get(key) != value for key, value in values.items()):
            extra.update(values)
            self._dirty = True

    def flush(self, final: bool = False) -> None:
        """Write every file now."""
        started = time.monotonic()
        t = self.transcript
        cues = caption_cues(t.words) if {"srt", "vtt"} & self.paths.keys() else []
        for fmt, path in self.paths.items():
            if fmt == "json":
                text = self._json(final)
            elif fmt == "srt":
                text = srt_text(cues)
            elif fmt == "vtt":
                text = vtt_text(cues, t.speaker)
            else:
                text = txt_text(t)
            write_text_atomic(path, text)
        self._dirty = False
        self._last_write = time.monotonic()
        self._interval = max(self.flush_every_s, (self._last_write - started) / WRITE_SHARE)
        self.writes += 1

    def close(self) -> None:
        """Write the final files (the JSON says `"final": true`)."""
        if self._closed:
            return
        self._closed = True
        self.flush(final=True)
        logger.info("captions written to %s", ", ".join(str(p) for p in self.paths.values()))

    def _json(self, final: bool) -> str:
        data = json_dict(self.transcript)
        del data["updates"]
        data["final"] = final
        data["caption_updates"] = self._deltas
        return json.dumps(json_safe(data), ensure_ascii=False, indent=1, allow_nan=False) + "\n"
