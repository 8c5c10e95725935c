"""From decoded tokens and per-token times to the words of a window, for every engine.

An engine supplies, for its text tokens, the time each one starts at (from CTranslate2's
alignment or our own DTW) and its probability; the rest (splitting into words, attaching
punctuation as openai/whisper's timing does, dropping what was heard in the silent tail,
capping smeared words as faster-whisper does) is the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from bot.messages import Word
from bot.text import SENTENCE_ENDS

PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
# Words starting this close to the window's end were decoded from its silent tail.
TAIL_MARGIN_S = 0.05


class WordSplitter(Protocol):
    """What of a Whisper tokenizer the timing needs (faster-whisper's Tokenizer has it)."""

    eot: int

    def split_to_word_tokens(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]: ...


@dataclass(frozen=True)
class WordTiming:
    """One word as decoded: its text, its tokens (counted for segment ends), times in seconds
    from the window start, and the mean probability of its tokens."""

    text: str
    tokens: tuple[int, ...]
    start: float
    end: float
    probability: float


def word_timings(
    tokenizer: WordSplitter,
    text_tokens: list[int],
    token_starts_s: np.ndarray,
    token_probabilities: Sequence[float],
) -> list[WordTiming]:
    """Split text tokens into words timed by their first token's start, the next word's start
    ending each; `token_starts_s` may be short (the last value then holds for the rest)."""
    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1 or len(token_starts_s) == 0:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    times = np.asarray(token_starts_s, dtype=np.float64)
    if len(times) < len(boundaries):
        times = np.pad(times, (0, len(boundaries) - len(times)), mode="edge")
    starts, ends = times[boundaries[:-1]], times[boundaries[1:]]
    return [
        WordTiming(
            word,
            tuple(tokens),
            float(start),
            float(end),
            float(np.mean(token_probabilities[i:j])) if j > i else 0.0,
        )
        for word, tokens, start, end, i, j in zip(
            words[:-1], word_tokens[:-1], starts, ends, boundaries[:-1], boundaries[1:]
        )
    ]


def merge_punctuation(timings: list[WordTiming]) -> list[WordTiming]:
    """Attach lone punctuation to its neighbour word, as openai/whisper's timing does.

    Tokens move with the text so that token counts (used for segment ends) stay right; a word
    emptied by a merge stays in place with no text and no tokens.
    """
    items = list(timings)
    following = len(items) - 1
    for i in range(len(items) - 2, -1, -1):
        item = items[i]
        if item.text.startswith(" ") and _only(item.text.strip(), PREPEND_PUNCTUATION):
            target = items[following]
            items[following] = replace(
                target,
                text=item.text + target.text,
                tokens=item.tokens + target.tokens,
                start=item.start,
            )
            items[i] = replace(item, text="", tokens=())
        else:
            following = i
    previous = 0
    for j in range(1, len(items)):
        before, item = items[previous], items[j]
        if before.text and not before.text.endswith(" ") and _only(item.text, APPEND_PUNCTUATION):
            items[previous] = replace(
                before, text=before.text + item.text, tokens=before.tokens + item.tokens
            )
            items[j] = replace(item, text="", tokens=())
        else:
            previous = j
    return items


def window_words(
    timings: list[WordTiming],
    duration_s: float,
    segment_token_ends: frozenset[int] = frozenset(),
) -> tuple[tuple[Word, ...], tuple[int, ...]]:
    """The words of a window of `duration_s` (punctuation merged, none from the silent tail,
    smeared ones capped) and the indices of the words after which a segment ended, given the
    counts of text tokens after which the decoder closed one."""
    words: list[Word] = []
    segment_ends: list[int] = []
    token_count = 0
    limit = duration_s - TAIL_MARGIN_S
    for timing in merge_punctuation(timings):
        token_count += len(timing.tokens)
        if not timing.text.strip():
            continue
        if timing.start >= limit:
            break  # decoded from the silent tail: not speech
        end = round(min(timing.end, duration_s), 3)
        words.append(Word(timing.text, round(timing.start, 3), end, timing.probability))
        if token_count in segment_token_ends:
            segment_ends.append(len(words) - 1)
    return clamp_long_words(words), tuple(segment_ends)


def clamp_long_words(words: Sequence[Word]) -> tuple[Word, ...]:
    """Cap implausibly long words (alignment smears them over pauses), like faster-whisper:
    a sentence's last word (or the window's) keeps its start, the window's first its end."""
    durations = [w.end - w.start for w in words if w.end > w.start]
    if not durations:
        return tuple(words)
    max_duration = min(0.7, float(np.median(durations))) * 2
    clamped = list(words)
    for i, word in enumerate(words):
        if word.end - word.start <= max_duration:
            continue
        if word.text.strip()[-1:] in SENTENCE_ENDS or i == len(words) - 1:
            clamped[i] = Word(word.text, word.start, word.start + max_duration, word.probability)
        elif i == 0:
            clamped[i] = Word(word.text, word.end - max_duration, word.end, word.probability)
    return tuple(clamped)


def _only(text: str, characters: str) -> bool:
    return bool(text) and all(c in characters for c in text)
