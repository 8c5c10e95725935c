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


# Marks the streaming policy writes in front of a word for the word before it (it holds a
# word's closing marks at a pause until it hears how the sentence goes on: ". Now").
LEADING_MARKS = "".join(SENTENCE_ENDS) + ",;:" + CLOSERS


def closing_marks(text: str) -> tuple[str, str]:
    """The marks a word carries in front for the word before it, and the rest of it:
    ". Now" → (".", " Now"), "." → (".", ""); ("", text) when it carries none."""
    bare = text.lstrip(LEADING_MARKS)
    marks = text[: len(text) - len(bare)]
    if marks and (not bare or bare[0].isspace()):
        return marks, bare
    return "", text


def ends_sentence(text: str) -> bool:
    """True if `text` closes a sentence (., ?, ! or their CJK forms, maybe before a quote)."""
    stripped = text.strip().rstrip(CLOSERS)
    return bool(stripped) and stripped[-1] in SENTENCE_ENDS
