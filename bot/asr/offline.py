"""Long-form transcription over any engine's window decoding, as Whisper seeks through a file.

Whole recording in windows of up to 30 s (less the silent tail), each conditioned on the text
before it. As Whisper seeks past its last complete segment, each window but the last keeps only
the words that end clear of its end (`MARGIN_S`); the next window starts where the first word it
dropped starts, so no word is cut in two at a window boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bot.asr.engine import Hypothesis, Task, Window
from bot.messages import SAMPLE_RATE, Word
from bot.text import PROMPT_CHARS

# Windows keep the words that end this far before the window's end (the rest are heard again,
# whole, by the next window), and move on by at least MIN_ADVANCE_S.
MARGIN_S = 1.5
MIN_ADVANCE_S = 10.0


def transcribe_in_windows(
    transcribe: Callable[[list[Window]], list[Hypothesis]],
    audio: np.ndarray,
    task: Task,
    language: str | None,
    window_s: float,
) -> tuple[list[Word], str | None]:
    """The words of the whole recording (times from its start) and the language heard first
    (`language` when given)."""
    window = int(window_s * SAMPLE_RATE)
    words: list[Word] = []
    detected = language
    offset = 0
    while offset < len(audio):
        chunk = audio[offset : offset + window]
        prompt = "".join(w.text for w in words)[-PROMPT_CHARS:]
        (hypothesis,) = transcribe([Window(chunk, task, detected, prompt)])
        detected = detected or hypothesis.language
        shift = offset / SAMPLE_RATE
        heard = list(hypothesis.words)
        advance = len(chunk)
        if offset + len(chunk) < len(audio):
            limit = len(chunk) / SAMPLE_RATE - MARGIN_S
            cut = next((i for i, w in enumerate(heard) if w.end > limit), len(heard))
            if cut < len(heard) and heard[cut].start >= MIN_ADVANCE_S:
                advance = int(heard[cut].start * SAMPLE_RATE)
                heard = heard[:cut]
        words += [Word(w.text, w.start + shift, w.end + shift, w.probability) for w in heard]
        offset += advance
    return words, detected
