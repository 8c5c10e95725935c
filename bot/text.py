"""Rules about caption text shared by the engines, the streaming policy and the writers.

A leaf module: it imports nothing from other bot packages, so any layer may use it.
"""

from __future__ import annotations

SENTENCE_ENDS = frozenset(".?!。？！")
# Closing quotes and brackets that may follow a sentence end ("Really?" she said.)
CLOSERS = "\"'”’»)]}」』）】"
# The recent committed text a decoder is conditioned on (Whisper's previous-text prompt):
# about 40-50 tokens of English, inside the engines' MAX_PROMPT_TOKENS prompt slots.
PROMPT_CHARS = 200


def ends_sentence(text: str) -> bool:
    """True if `text` closes a sentence (., ?, ! or their CJK forms, maybe before a quote)."""
    stripped = text.strip().rstrip(CLOSERS)
    return bool(stripped) and stripped[-1] in SENTENCE_ENDS
