"""The decoding rules every engine shares, as openai/whisper's transcribe applies them.

A window is decoded at the first temperature; a result that is too repetitive (gzip
compression ratio) or too improbable (average log-probability) is decoded again at the next
temperature, keeping the most probable result. A result the model calls silence (no-speech
probability high *and* text improbable) is neither retried nor shown. What an engine does per
temperature is its own; the loop and the rules are here.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

from bot.asr.engine import Hypothesis, Task
from bot.errors import ConfigError
from bot.messages import MIN_CONTEXT_S, WHISPER_WINDOW_S, Word

logger = logging.getLogger(__name__)

MAX_WINDOW_S = WHISPER_WINDOW_S
# Prompt slots for previous text, both engines (the jax decoder compiles its prefill at this
# width plus the start sequence); Whisper itself would take up to 223.
MAX_PROMPT_TOKENS = 64
# openai/whisper's word anomaly score (transcribe.py, hallucination_silence_threshold).
ANOMALOUS_PROBABILITY = 0.15
ANOMALOUS_SHORT_S = 0.133
ANOMALOUS_LONG_S = 2.0


@dataclass(frozen=True)
class DecodeOptions:
    """How streaming windows are decoded (offline decoding is each engine's standard way)."""

    beam_size: int = 1
    # Windows translated into English (non-English speech, task translate): greedy translation
    # of a partial sentence is unstable (26 FLEURS de/fr/es/pt items, base, real time: chrF
    # 41.95 / 42.62 greedy, 44.60 / 43.04 beam 5, offline 46.28), for little more decoding.
    translate_beam_size: int = 1
    temperatures: tuple[float, ...] = (0.0, 0.4, 0.8)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    audio_context: Literal["trimmed", "full"] = "trimmed"
    silence_tail_s: float = 1.0
    # A trimmed context is at least this long: Whisper, trained on 30 s windows, writes fewer
    # errors on a short window given more silence after it (base, 41 short English items
    # streamed: WER 5.11% at 0, 4.65% at 10, 4.05% at 15, 4.20% at 20; offline 3.60%); tiny.en
    # gained nothing (4.65% at 0 and 15). The factory picks it per model (MIN_CONTEXT_S_BY_MODEL).
    min_context_s: float = MIN_CONTEXT_S
    max_tokens_per_second: float = 8.0

    def beam_for(self, task: str) -> int:
        """The beam of a window's greedy (temperature 0) decode."""
        return self.translate_beam_size if task == "translate" else self.beam_size

    def __post_init__(self) -> None:
        if not 0 <= self.max_prompt_tokens <= MAX_PROMPT_TOKENS:
            raise ConfigError(
                f"max_prompt_tokens {self.max_prompt_tokens} is outside 0..{MAX_PROMPT_TOKENS}"
            )
        if self.beam_size < 1:
            raise ConfigError(f"beam size {self.beam_size} must be at least 1")
        if self.translate_beam_size < 1:
            raise ConfigError(f"translate beam size {self.translate_beam_size} must be at least 1")
        if not 0 <= self.min_context_s <= MAX_WINDOW_S:
            raise ConfigError(
                f"min_context_s {self.min_context_s} is outside 0..{MAX_WINDOW_S:g} seconds"
            )
        if not self.temperatures:
            raise ConfigError("temperatures is empty: give at least one (0.0 is greedy)")


@dataclass(frozen=True)
class Decoded:
    """One row's decode at one temperature; engines subclass it to carry what their word
    timing needs."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_probability: float
    temperature: float


D = TypeVar("D", bound=Decoded)


class PromptTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


def compression_ratio(text: str) -> float:
    """How well the text gzips: Whisper's sign of a decoding loop (above 2.4)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_silence(decoded: Decoded, options: DecodeOptions) -> bool:
    return (
        decoded.no_speech_probability > options.no_speech_threshold
        and decoded.avg_logprob < options.log_prob_threshold
    )


def loops(decoded: Decoded, options: DecodeOptions) -> bool:
    """Too repetitive (gzip compression ratio): Whisper's sign of a decoding loop."""
    return decoded.compression_ratio > options.compression_ratio_threshold


def needs_fallback(decoded: Decoded, options: DecodeOptions) -> bool:
    """Repetitive or improbable text, unless it is silence: a silent window decoded again by
    sampling only invents words, and openai/whisper does not retry it either (the CTranslate2
    engine said so here, the jax engine in its loop; both now ask this one rule)."""
    if is_silence(decoded, options):
        return False
    return loops(decoded, options) or decoded.avg_logprob < options.log_prob_threshold


def decode_with_fallback(
    count: int,
    options: DecodeOptions,
    generate: Callable[[list[int], float, bool], Sequence[D]],
    prompted: Sequence[bool] = (),
) -> list[D]:
    """The best decode of each of `count` rows: `generate(rows, temperature, with_prompt)`
    decodes the given rows, with or without their previous-text prompts; rows that need a
    fallback are decoded again at the next temperature.

    A row that loops while prompted (`prompted[row]`) is first decoded again at the same
    temperature without its prompt: the prompt is what leads a window into a loop (tiny.en,
    4 real-time sessions: 20 of 351 windows looped; none of the 13 decoded again without
    the prompt did, while sampling them mostly looped again). A decode that passes beats one
    that fails, whatever their probabilities (a loop is often the most probable text)."""
    best: list[D | None] = [None] * count
    unprompted: set[int] = set()  # rows whose prompt was dropped after a loop
    pending = list(range(count))
    for temperature in options.temperatures:
        failing = []
        tries = pending
        while tries:
            looped = []
            for with_prompt in (True, False):
                rows = [r for r in tries if (r not in unprompted) == with_prompt]
                if not rows:
                    continue
                for row, decoded in zip(rows, generate(rows, temperature, with_prompt)):
                    current = best[row]
                    if current is None or _rank(decoded, options) > _rank(current, options):
                        best[row] = decoded
                    if not needs_fallback(decoded, options):
                        continue
                    drop_prompt = with_prompt and row < len(prompted) and prompted[row]
                    (looped if drop_prompt and loops(decoded, options) else failing).append(row)
            unprompted.update(looped)
            tries = looped
        if not failing:
            break
        logger.debug("temperature fallback for %d window(s)", len(failing))
        pending = sorted(failing)
    return [b for b in best if b is not None]


def _rank(decoded: Decoded, options: DecodeOptions) -> tuple[bool, bool, float]:
    """Passing first, then not looping (faster-whisper's choice), then most probable."""
    return (
        not needs_fallback(decoded, options),
        not loops(decoded, options),
        decoded.avg_logprob,
    )


def word_anomaly(word: Word) -> float:
    """How little of a word the model heard: openai/whisper's word anomaly score (1 for a
    probability under 0.15, more for a word aligned shorter than 0.133 s or longer than 2 s)."""
    duration = word.end - word.start
    score = 1.0 if word.probability < ANOMALOUS_PROBABILITY else 0.0
    if duration < ANOMALOUS_SHORT_S:
        score += (ANOMALOUS_SHORT_S - duration) * 15
    if duration > ANOMALOUS_LONG_S:
        score += duration - ANOMALOUS_LONG_S
    return score


def spoken_words(words: Sequence[Word]) -> list[Word]:
    """The words that say something (not a lone punctuation mark)."""
    return [w for w in words if any(c.isalnum() for c in w.text)]


def is_anomaly(words: Sequence[Word]) -> bool:
    """Are these words, as a whole, text the model did not hear (openai/whisper's test for a
    hallucinated segment, on its first 8 words)?"""
    spoken = spoken_words(words)[:8]
    if not spoken:
        return False
    score = sum(word_anomaly(w) for w in spoken)
    return score >= 3 or score + 0.01 >= len(spoken)


def settle_words(
    words: tuple[Word, ...], decoded: Decoded, options: DecodeOptions, task: Task = "transcribe"
) -> tuple[tuple[Word, ...], bool]:
    """The words to report for a decode, and whether its segment ends still hold: none for
    silence, nor for a decode that needed a fallback (its greedy decode was improbable or
    looped) whose words are an anomaly: a breath after FLEURS' "...infection of others.",
    prompted with that sentence, was heard as "The hospital has" (probabilities 0.005 / 0.0
    / 0.05) at every temperature, or kept from a sample, and the end of the stream committed
    it. Transcribing only: a translation's words are not the audio's, so their alignment and
    probabilities say little of what was heard (26 FLEURS items translated, most windows
    improbable at every temperature: fleurs_de_002 lost all its text). Loops are collapsed
    (harder after a failed fallback, whose text is suspect anyway)."""
    if is_silence(decoded, options):
        return (), False
    failed = needs_fallback(decoded, options)
    unlooped = cut_word_loops(words)
    if failed:
        shown, holds = collapse_repetitions(unlooped), False
    else:
        shown = collapse_repetitions(unlooped, times=2, min_words=3)
        holds = unlooped == words and len(shown) == len(words)
    # After the loop is collapsed: a loop's copies are aligned to no time ("7 of clubs," three
    # times over 1.5 s of tiny.en), and the first copy was heard.
    fell_back = failed or decoded.temperature > 0
    if task == "transcribe" and fell_back and is_anomaly(shown):
        return (), False
    return shown, holds


def hypothesis(
    words: tuple[Word, ...],
    segment_ends: tuple[int, ...],
    language: tuple[str, float],
    decoded: Decoded,
    options: DecodeOptions,
    task: Task,
) -> Hypothesis:
    """What a window's decode is reported as: its settled words (`settle_words`), the
    segment ends while they hold, the language with its probability, and the scores."""
    shown, segments_hold = settle_words(words, decoded, options, task)
    return Hypothesis(
        words=shown,
        language=language[0],
        language_probability=language[1],
        segment_ends=segment_ends if segments_hold else (),
        no_speech_probability=decoded.no_speech_probability,
        avg_logprob=decoded.avg_logprob,
        temperature=decoded.temperature,
    )


# Letters (no digits: "100000" is a number) repeated five times or more inside one word.
WORD_LOOP = re.compile(r"([^\W\d_]{1,6}?)\1{4,}")


def cut_word_loops(words: tuple[Word, ...]) -> tuple[Word, ...]:
    """Write once a run of letters a word repeats back to back: Whisper loops inside a word
    too ("Unabhängigigigigig..." for "Unabhängigkeitserklärung", base translating German in
    real time), where neither the phrase rule below nor a later window catches it."""
    cut = [(w, WORD_LOOP.sub(r"\1", w.text)) for w in words]
    return tuple(w if text == w.text else replace(w, text=text) for w, text in cut)


def collapse_repetitions(
    words: tuple[Word, ...], times: int = 3, min_words: int = 1
) -> tuple[Word, ...]:
    """Keep one copy of a phrase of `min_words`+ words repeated `times`+ times in a row.

    Whisper loops on short or ending windows ("And so my fellow Americans. And so my fellow
    Americans."); people do repeat a word or two, hardly ever a whole phrase back to back.
    """
    keys = [w.text.strip(" ,.!?").casefold() for w in words]
    kept: list[int] = []
    i = 0
    while i < len(words):
        for n in range(max(min_words, 1), 9):
            if i + n * times > len(keys):
                kept.append(i)
                i += 1
                break
            run = 1
            while keys[i + run * n : i + (run + 1) * n] == keys[i : i + n]:
                run += 1
            if run >= times:
                kept.extend(range(i, i + n))
                i += run * n
                break
        else:
            kept.append(i)
            i += 1
    return tuple(words[k] for k in kept)


def prompt_tokens(tokenizer: PromptTokenizer, prompt: str, limit: int) -> list[int]:
    """The last `limit` tokens of the previous text (none for an empty prompt)."""
    if not prompt.strip() or limit == 0:
        return []
    return tokenizer.encode(" " + prompt.strip())[-limit:]
