"""Where a resumed stream's audio starts (a restarted ASR stage, a reconnected service).

Not at its last committed word's end: Whisper decoding a window that starts mid-sentence
often skips the words at its head (tiny.en resumed at "justice." heard "It is discouraging"
and never "to letters of more generous design"), and the policy then commits past them. The
audio is replayed from a few seconds earlier instead, so the new stream re-hears committed
words, which it places by text (bot/streaming/agreement.py) and does not commit again, as
any window that still holds committed words.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages import CommittedWord

RESUME_CONTEXT_S = 3.0


def resume_from(history: Sequence[CommittedWord], context_s: float = RESUME_CONTEXT_S) -> float:
    """Audio time from which to replay: the start of the earliest committed word that ends
    within `context_s` of the last one (-inf before any word)."""
    if not history:
        return float("-inf")
    last_end = history[-1].end
    return min(w.start for w in history if w.end >= last_end - context_s)
