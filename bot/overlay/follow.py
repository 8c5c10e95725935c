"""`captionbot overlay --follow FILE`: serve the captions of a live JSON caption file.

Another bot (or a bot started with --no-overlay) writes `<stem>.json` while the meeting runs;
this follows that file and publishes what is new, so the overlay can run on its own, e.g. on a
different port or for a recording being captioned.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from threading import Event

from bot.errors import CaptionFileError
from bot.messages import CaptionUpdate, CommittedWord, Word

logger = logging.getLogger(__name__)


class CaptionFileFollower:
    """Turns the growth of a live caption JSON file into caption updates."""

    def __init__(self, path: Path, stream_id: str | None = None) -> None:
        self.path = Path(path)
        self.stream_id = stream_id
        self._words_seen = 0
        self._tentative = ""
        self._mtime = 0.0

    def poll(self) -> CaptionUpdate | None:
        """The change since the last poll, or None."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime == self._mtime:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # being replaced right now: next poll
        self._mtime = mtime
        if not isinstance(data, dict) or not isinstance(data.get("words"), list):
            raise CaptionFileError(
                f"{self.path} is not a captionbot caption JSON file: "
                "follow the .json that `captionbot run` writes in outputs.dir"
            )
        words = data["words"]
        if len(words) < self._words_seen:  # a new meeting in the same file
            self._words_seen = 0
        new = tuple(
            CommittedWord(
                " " + str(w.get("text", "")),
                float(w.get("start", 0)),
                float(w.get("end", 0)),
                1.0,
                0.0,
                0.0,
            )
            for w in words[self._words_seen :]
        )
        self._words_seen = len(words)
        updates = data.get("caption_updates") or []
        tentative = str(updates[-1].get("tentative", "")) if updates else ""
        if not new and tentative == self._tentative:
            return None
        self._tentative = tentative
        return CaptionUpdate(
            stream_id=self.stream_id or str(data.get("stream_id") or "meeting"),
            t_s=float(data.get("duration_s") or 0.0),
            committed=new,
            tentative=tuple(Word(" " + t, 0.0, 0.0) for t in tentative.split()),
            language=data.get("language"),
            final=bool(data.get("final")),
        )


def follow(path: Path, publish, stop: Event, every_s: float = 0.25) -> None:
    """Publish the file's changes until `stop`."""
    follower = CaptionFileFollower(path)
    while not stop.is_set():
        update = follower.poll()
        if update is not None:
            publish(update)
        stop.wait(every_s)
