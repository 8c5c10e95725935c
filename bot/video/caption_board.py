"""The caption text a viewer should see now, kept from a stream's caption updates."""

from __future__ import annotations

from dataclasses import dataclass

from bot.messages import CaptionUpdate, join_words

# Committed text kept for display: far more than any caption strip shows.
KEEP_CHARS = 600


@dataclass
class CaptionBoard:
    """Committed text (append-only, only its tail kept) and the current tentative tail."""

    stream_id: str
    committed: str = ""
    tentative: str = ""
    committed_words: int = 0
    tentative_words: int = 0
    speaker: str | None = None  # the meeting participant's name, shown before the text

    def apply(self, update: CaptionUpdate) -> bool:
        """Fold in one update; True if the visible text changed."""
        before = (self.committed, self.tentative, self.speaker)
        self.speaker = update.speaker or self.speaker
        if update.committed:
            added = "".join(w.text for w in update.committed)
            self.committed = (self.committed + added)[-KEEP_CHARS:]
            self.committed_words += len(update.committed)
        self.tentative = join_words(update.tentative)
        self.tentative_words = len(update.tentative)
        return (self.committed, self.tentative, self.speaker) != before
