"""Per-item evaluation metrics: recognition errors, translation quality, caption flicker, speed.

Text normalization (both reference and hypothesis, before any error count):
- English (`en`, `en-US`...): OpenAI Whisper's `EnglishTextNormalizer` (lower case, no
  punctuation, British → American spelling, spoken numbers as digits: "fifty" == "50").
- Every other language, or an unknown one (`None`): Whisper's `BasicTextNormalizer` (lower case,
  punctuation and symbols → spaces; diacritics kept, so "für" != "fur").

Error rates:
- WER: `jiwer.process_words` on the normalized texts (split on whitespace).
- CER: `jiwer.process_characters` on the normalized texts *with all whitespace removed*, in
  every language. The normalizers turn punctuation into spaces, and languages written without
  spaces get spaces only from that (or from inconsistent references); removing them makes CER
  count characters only, leaving word boundaries to WER ("the cat" vs "thecat": CER 0, WER 1).
- Languages written without spaces between words (`SPACELESS_LANGUAGES`: ja, zh, th, lo, my,
  km, yue): WER is not meaningful there, so CER is the primary metric (`primary_metric`).
- Dataset scores pool counts (`pool`): total errors / total reference words, not the mean of
  per-item rates, so an item weighs by its length. An empty hypothesis is all deletions; an
  empty reference (after normalization) is a `ValueError`: there is nothing to score against.

Translation quality: sacrebleu on the texts as written (sacrebleu tokenizes itself; no
normalizer): corpus BLEU with the default 13a tokenizer and corpus chrF with default settings
(`translation_scores`), and per sentence (`sentence_translation_scores`; BLEU with effective
n-gram order as sacrebleu's `sentence_bleu` does). Scores are 0–100.

Which family applies (`output_language`, used by the runner): WER/CER only where the output is in
the reference's language (transcription, or translation of English speech, which is English);
BLEU/chrF only against a reference translation. An English translation is never scored by WER
against the source-language transcript, nor a transcript by BLEU.

What a viewer reads, beyond normalized WER (the streaming artefacts, each defined in its docstring):
- `written_error`: WER on the text as written (case and punctuation count), against a reference
  that is written that way (`is_written`) or against the offline transcript of the same model;
- `repeated_ngram_loops`: an n-gram said once but shown two or more times back to back;
- `tentative_repeats`: tentative tails that start by repeating the last committed words;
- `mid_sentence_breaks`: a sentence end followed by a lowercase word.

Why one ~700-line module: every metric is a small pure function with its definition in its
docstring, and they share the normalizers and tokenizers; `ItemMetrics` gathers them per item.
The next family of metrics should get a module of its own.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import jiwer
import sacrebleu
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from bot.eval.latency import ItemLatency, LatencySummary
from bot.outputs.transcript import CaptionState
from bot.outputs.writers import json_safe
from bot.text import CLOSERS, ends_sentence

SPACELESS_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "my", "km", "yue"})

Normalizer = EnglishTextNormalizer | BasicTextNormalizer


# ---------------------------------------------------------------------------------------------
# Normalization


def _base_language(language: str | None) -> str | None:
    """`"en-US"` → `"en"`; `None` or empty stays `None`."""
    if not language:
        return None
    return language.replace("_", "-").split("-")[0].lower()


@lru_cache(maxsize=2)
def _normalizer(english: bool) -> Normalizer:
    return EnglishTextNormalizer() if english else BasicTextNormalizer()


def normalizer_for(language: str | None) -> Normalizer:
    """Whisper's English normalizer for English, the basic one for anything else."""
    return _normalizer(_base_language(language) == "en")


def is_spaceless(language: str | None) -> bool:
    """Whether the language is written without spaces between words (WER not meaningful)."""
    return _base_language(language) in SPACELESS_LANGUAGES


def primary_metric(language: str | None) -> Literal["wer", "cer"]:
    return "cer" if is_spaceless(language) else "wer"


# ---------------------------------------------------------------------------------------------
# Recognition errors


@dataclass(frozen=True)
class _AlignmentCounts:
    """Edit operations aligning a hypothesis to a reference; adding two pools them."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_length(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def rate(self) -> float:
        """Errors per reference unit; NaN when there is no reference (an empty pool)."""
        if self.reference_length == 0:
            return float("nan")
        return self.errors / self.reference_length

    def __add__(self, other: object) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _AlignmentCounts)
        return type(self)(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


@dataclass(frozen=True)
class ErrorCounts(_AlignmentCounts):
    """Word errors of one item (or of a pool of items)."""

    @property
    def reference_words(self) -> int:
        return self.reference_length

    @property
    def wer(self) -> float:
        return self.rate


@dataclass(frozen=True)
class CharErrorCounts(_AlignmentCounts):
    """Character errors (whitespace ignored) of one item (or of a pool of items)."""

    @property
    def reference_chars(self) -> int:
        return self.reference_length

    @property
    def cer(self) -> float:
        return self.rate


CountsT = TypeVar("CountsT", ErrorCounts, CharErrorCounts)


def pool(counts: Iterable[CountsT]) -> CountsT:
    """Sum of counts: its rate is total errors / total reference length (not a mean of rates)."""
    items = list(counts)
    if not items:
        raise ValueError("no error counts to pool: score at least one item with a reference")
    return reduce(lambda a, b: a + b, items)


def _normalized(reference: str, hypothesis: str, language: str | None) -> tuple[str, str]:
    normalize = normalizer_for(language)
    ref, hyp = normalize(reference).strip(), normalize(hypothesis).strip()
    if not ref:
        raise ValueError(
            f"reference {reference!r} is empty after normalization: items without a "
            "reference text cannot be scored"
        )
    return ref, hyp


def word_error(reference: str, hypothesis: str, language: str | None) -> ErrorCounts:
    """Word errors between the normalized texts (see the module docstring)."""
    ref, hyp = _normalized(reference, hypothesis, language)
    out = jiwer.process_words(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)


def _without_spaces(text: str) -> str:
    return "".join(text.split())


def char_error(reference: str, hypothesis: str, language: str | None) -> CharErrorCounts:
    """Character errors between the normalized texts with all whitespace removed."""
    ref, hyp = _normalized(reference, hypothesis, language)
    out = jiwer.process_characters(_without_spaces(ref), _without_spaces(hyp))
    return CharErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)


def output_language(source_language: str | None, task: str) -> str | None:
    """The language the model writes: English when translating, else the speech's language."""
    return "en" if task == "translate" else source_language


def same_language(a: str | None, b: str | None) -> bool:
    """Whether two language tags name the same language (`en` == `en-US`); unknown is never."""
    return _base_language(a) is not None and _base_language(a) == _base_language(b)


# ---------------------------------------------------------------------------------------------
# The text as written: case and punctuation

# A word keeps inner hyphens, apostrophes, periods, commas, colons and slashes ("pear-shaped",
# "don't", "a.m", "1,000", "12:30"); every other non-space character is a token of its own.
_WRITTEN_TOKEN = re.compile(r"\w+(?:[-'.,:/]\w+)*|[^\w\s]")
_TYPOGRAPHIC = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"'})
_SENTENCE_PUNCTUATION = re.compile(r"[.,;:!?。、！？]")


def written_tokens(text: str) -> list[str]:
    """Words and punctuation marks as written (NFC, typographic quotes made straight)."""
    return _WRITTEN_TOKEN.findall(unicodedata.normalize("NFC", text).translate(_TYPOGRAPHIC))


def is_written(text: str) -> bool:
    """Whether a reference keeps case and punctuation, so the written form can be scored.

    It must hold a punctuation mark (`.,;:!?。、`) and, if its script has case, an upper-case
    letter: an all-lower-case text (FLEURS' normalized transcriptions, also lower-case sentence
    fragments) or an all-upper-case one (LibriSpeech) says nothing about case.
    """
    if not _SENTENCE_PUNCTUATION.search(text):
        return False
    cased = [c for c in text if c.isupper() or c.islower()]
    if not cased:
        return True
    return any(c.isupper() for c in cased) and any(c.islower() for c in cased)


def written_error(reference: str, hypothesis: str) -> ErrorCounts:
    """Case- and punctuation-sensitive word errors: `written_tokens` aligned as they are.

    No normalizer: "The" vs "the", "cat," vs "cat" (a deleted comma) and "fifty" vs "50" are all
    errors. Each punctuation mark is a token, so a missing comma is one deletion, not a
    substitution of the word before it.
    """
    ref, hyp = written_tokens(reference), written_tokens(hypothesis)
    if not ref:
        raise ValueError(f"reference {reference!r} has no words: it cannot be scored")
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)


# ---------------------------------------------------------------------------------------------
# Streaming artefacts a viewer reads


def plain_words(text: str) -> list[str]:
    """Whitespace-separated words, lower-cased, without punctuation at either end ("Not," →
    "not", "1469-1470." → "1469-1470"); words that were only punctuation are dropped."""
    words = (_EDGES.sub("", w).lower() for w in text.split())
    return [w for w in words if w]


_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


@dataclass(frozen=True)
class LoopStats:
    """Repeated-n-gram loops in one text (see `repeated_ngram_loops`)."""

    loops: int
    repeated_words: int
    words: int


def repeated_ngram_loops(text: str, max_n: int = 20) -> LoopStats:
    """Count n-grams repeated back to back: "not not", "1469-1470. 1469-1470.", "a b a b a b".

    Words are `plain_words` (case and edge punctuation ignored). Scanning left to right, at
    position i the smallest n (1 ≤ n ≤ `max_n`) with words[i:i+n] == words[i+n:i+2n] starts a
    *loop*; the loop extends over every further back-to-back copy of that n-gram (k copies in
    all), counts once, adds (k - 1) * n to `repeated_words` (the words shown beyond the first
    copy), and scanning resumes after its last copy. "a b a b a b" is one loop of 4 repeated
    words; "the cat the dog" none (not back to back). Natural repetitions ("had had") count too:
    compare the count between systems on the same audio, not against zero.
    """
    words = plain_words(text)
    loops = repeated = i = 0
    while i < len(words):
        for n in range(1, min(max_n, (len(words) - i) // 2) + 1):
            gram = words[i : i + n]
            if words[i + n : i + 2 * n] == gram:
                copies = 2
                while words[i + copies * n : i + (copies + 1) * n] == gram:
                    copies += 1
                loops += 1
                repeated += (copies - 1) * n
                i += copies * n
                break
        else:
            i += 1
    return LoopStats(loops=loops, repeated_words=repeated, words=len(words))


@dataclass(frozen=True)
class TentativeRepeats:
    """Tentative tails that begin by repeating committed words (see `tentative_repeats`)."""

    tentative_states: int
    repeating: int

    @property
    def share(self) -> float:
        if self.tentative_states == 0:
            return float("nan")
        return self.repeating / self.tentative_states


def tentative_repeats(updates: Sequence[CaptionState], max_words: int = 20) -> TentativeRepeats:
    """How many caption states show a tentative tail whose first words duplicate the last
    committed words: the viewer reads "... the cat sat | sat on the" .

    Over the states with a tentative tail (`plain_words` of it not empty), a state *repeats*
    when for some k ≥ 1 (up to `max_words`) the first k words of the tentative tail equal the
    last k words of the committed text (both as `plain_words`). `share` is repeating states per
    tentative state.
    """
    tentative = repeating = 0
    for state in updates:
        tail = plain_words(state.tentative)[:max_words]
        if not tail:
            continue
        tentative += 1
        # Only the end of the committed text matters; its first word may be cut, so drop it.
        end = plain_words(state.committed[-40 * max_words :])
        if len(state.committed) > 40 * max_words:
            end = end[1:]
        end = end[-max_words:]
        if any(tail[:k] == end[-k:] for k in range(1, min(len(tail), len(end)) + 1)):
            repeating += 1
    return TentativeRepeats(tentative_states=tentative, repeating=repeating)


def mid_sentence_breaks(text: str) -> int:
    """Sentence ends followed by a lower-case word: "the cat. sat on the mat" counts one.

    A sentence end is a whitespace-separated word ending in ".", "!" or "?" (closing quotes or
    brackets after it ignored), but not an ellipsis ("...", "…": a pause, not an end) and not an
    abbreviation with an inner period ("e.g.", "a.c."). The next word breaks the sentence when
    its first letter is lower case (leading punctuation such as "¿" skipped). Scripts without
    case never count, and a sentence end before a capitalized noun (German) is not seen.
    """
    words = text.split()
    breaks = 0
    for word, following in zip(words, words[1:]):
        end = word.rstrip(CLOSERS)
        if not ends_sentence(end) or end.endswith("..") or "." in end[:-1]:
            continue
        first = next((c for c in following if c.isalpha()), "")
        if first.islower():
            breaks += 1
    return breaks


# ---------------------------------------------------------------------------------------------
# Translation quality


@dataclass(frozen=True)
class TranslationScores:
    """sacrebleu BLEU (13a tokenizer) and chrF, 0–100."""

    bleu: float
    chrf: float


@dataclass(frozen=True)
class TranslationPair:
    """A translation and its reference, kept for the corpus scores of a set of items."""

    reference: str
    hypothesis: str


def corpus_translation_scores(pairs: Iterable[TranslationPair]) -> TranslationScores | None:
    """Corpus BLEU/chrF of the pairs, or None when there are none."""
    pairs = list(pairs)
    if not pairs:
        return None
    return translation_scores([p.reference for p in pairs], [p.hypothesis for p in pairs])


def translation_scores(references: list[str], hypotheses: list[str]) -> TranslationScores:
    """Corpus-level scores of a dataset: one reference per hypothesis, in the same order."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(hypotheses)} translations for {len(references)} references: "
            "give exactly one reference per translation"
        )
    if not references:
        raise ValueError("no translations to score")
    return TranslationScores(
        bleu=sacrebleu.corpus_bleu(hypotheses, [references]).score,
        chrf=sacrebleu.corpus_chrf(hypotheses, [references]).score,
    )


def sentence_translation_scores(reference: str, hypothesis: str) -> TranslationScores:
    """Scores of one item (sentence BLEU uses effective n-gram order, like sacrebleu's)."""
    return TranslationScores(
        bleu=sacrebleu.sentence_bleu(hypothesis, [reference]).score,
        chrf=sacrebleu.sentence_chrf(hypothesis, [reference]).score,
    )


# ---------------------------------------------------------------------------------------------
# Caption stability


@dataclass(frozen=True)
class FlickerStats:
    """How often tentative captions changed under the viewer's eyes (see `flicker`)."""

    states: int
    revisions: int
    final_words: int
    committed_rewrites: int

    @property
    def revisions_per_word(self) -> float:
        if self.final_words == 0:
            return float("nan")
        return self.revisions / self.final_words


def _units(text: str, by_char: bool) -> list[str]:
    return list(_without_spaces(text)) if by_char else text.split()


def flicker(updates: Sequence[CaptionState], language: str | None = None) -> FlickerStats:
    """Revisions of displayed tentative words, from the caption states a viewer saw.

    A state displays `committed + " " + tentative`, split into words on whitespace (for
    languages without spaces, `is_spaceless`, into non-space characters instead: "words" below
    then means characters). For each pair of consecutive states, every position at or beyond
    the previous state's committed word count that held a word in the previous display counts
    one *revision* if the next display has a different word there or none at all (it vanished).
    Words appended after the previous display's end are not revisions, and neither is a
    tentative word that becomes committed unchanged. Comparison is of the text as shown, so
    a change of case or punctuation is a revision; a word inserted before others shifts them,
    and each shifted word counts.

    `revisions_per_word` divides by the words of the last state's committed text.
    `committed_rewrites` counts state pairs whose committed text is not an extension of the
    previous one (committed text must never change: anything but 0 is a bug).
    """
    by_char = is_spaceless(language)
    revisions = rewrites = 0
    for prev, nxt in zip(updates, updates[1:]):
        if not nxt.committed.startswith(prev.committed):
            rewrites += 1
        shown = _units(f"{prev.committed} {prev.tentative}", by_char)
        now = _units(f"{nxt.committed} {nxt.tentative}", by_char)
        start = len(_units(prev.committed, by_char))
        revisions += sum(1 for i in range(start, len(shown)) if i >= len(now) or now[i] != shown[i])
    final_words = len(_units(updates[-1].committed, by_char)) if updates else 0
    return FlickerStats(
        states=len(updates),
        revisions=revisions,
        final_words=final_words,
        committed_rewrites=rewrites,
    )


# ---------------------------------------------------------------------------------------------
# Speed


@dataclass(frozen=True)
class SpeedStats:
    """Cost of captioning `audio_s` seconds of audio over `streams` concurrent streams.

    `wall_s` is the whole run, `decode_s` the time spent in ASR decoding, `cpu_s` process CPU
    (user + system, this process and its waited-for children), `peak_rss_mb` the peak resident
    memory (`peak_rss_mb()`).
    """

    audio_s: float
    wall_s: float
    decode_s: float
    cpu_s: float
    peak_rss_mb: float
    streams: int

    @property
    def rtf(self) -> float:
        """Real-time factor: decode seconds per audio second (< 1 is faster than real time)."""
        return self.decode_s / self.audio_s if self.audio_s > 0 else float("nan")

    @property
    def cpu_per_audio_s(self) -> float:
        """CPU seconds spent per second of audio."""
        return self.cpu_s / self.audio_s if self.audio_s > 0 else float("nan")


@dataclass(frozen=True)
class ResourceUsage:
    """Wall-clock and process CPU seconds at one moment, or spent between two (`since`).

    CPU is user + system time of this process and of its terminated, waited-for children
    (`getrusage`): a child process still running is not counted yet.
    """

    wall_s: float
    cpu_s: float

    @classmethod
    def now(cls) -> ResourceUsage:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        return cls(wall_s=time.perf_counter(), cpu_s=cpu)

    def since(self, start: ResourceUsage) -> ResourceUsage:
        return ResourceUsage(wall_s=self.wall_s - start.wall_s, cpu_s=self.cpu_s - start.cpu_s)


class RssSampler:
    """Peak resident memory (MiB) of this process *during* a block, sampled every 0.1 s.

    `peak_rss_mb()` only ever grows, so it cannot tell one configuration's peak from an
    earlier one's; this watches /proc/self/statm (Linux) while the block runs.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_mb = 0.0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self._interval_s)

    def _read(self) -> None:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            self.peak_mb = max(self.peak_mb, peak_rss_mb())
            return
        self.peak_mb = max(self.peak_mb, pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


def peak_rss_mb() -> float:
    """Peak resident memory in MiB of this process or its largest waited-for child."""
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    per_unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return peak * per_unit / 2**20


# ---------------------------------------------------------------------------------------------
# One item's results


@dataclass(frozen=True)
class TextQuality:
    """What a viewer reads in one final text, beyond its errors (see the functions named)."""

    loops: LoopStats
    mid_sentence_breaks: int

    @classmethod
    def of(cls, text: str) -> TextQuality:
        return cls(loops=repeated_ngram_loops(text), mid_sentence_breaks=mid_sentence_breaks(text))


@dataclass(frozen=True)
class ItemMetrics:
    """Everything measured on one dataset item; `as_row` is its line in results.json.

    `language` is the speech's. `words`/`chars` are None where the output is not in the
    reference's language (a translation), `translation` (sentence scores) and `translated`
    None without a reference translation. `written` is the written-form error against a
    reference that keeps case and punctuation, `written_vs_offline` against the offline
    transcript of the same model (streaming only); `repeats` needs caption states (streaming).
    """

    id: str
    language: str | None
    duration_s: float
    words: ErrorCounts | None
    chars: CharErrorCounts | None
    latency: ItemLatency
    flicker: FlickerStats
    translation: TranslationScores | None = None
    speed: SpeedStats | None = None
    translated: TranslationPair | None = None
    written: ErrorCounts | None = None
    written_vs_offline: ErrorCounts | None = None
    quality: TextQuality | None = None
    repeats: TentativeRepeats | None = None

    @property
    def primary_metric(self) -> Literal["wer", "cer"]:
        return primary_metric(self.language)

    @property
    def error_rate(self) -> float | None:
        """The primary metric's value: CER for languages without spaces, WER otherwise."""
        if self.words is None or self.chars is None:
            return None
        return self.chars.cer if self.primary_metric == "cer" else self.words.wer

    def as_row(self) -> dict[str, Any]:
        """Plain JSON values under stable snake_case keys (absent or NaN values are None)."""
        row: dict[str, Any] = {
            "id": self.id,
            "language": self.language,
            "duration_s": self.duration_s,
            "primary_metric": self.primary_metric,
            "error_rate": self.error_rate,
            "wer": self.words.wer if self.words else None,
            **_counts_row("word", self.words),
            "reference_words": self.words.reference_words if self.words else None,
            "cer": self.chars.cer if self.chars else None,
            **_counts_row("char", self.chars),
            "reference_chars": self.chars.reference_chars if self.chars else None,
            "bleu": self.translation.bleu if self.translation else None,
            "chrf": self.translation.chrf if self.translation else None,
            "pc_wer": self.written.wer if self.written else None,
            "pc_wer_vs_offline": (self.written_vs_offline.wer if self.written_vs_offline else None),
            "loops": self.quality.loops.loops if self.quality else None,
            "loop_repeated_words": self.quality.loops.repeated_words if self.quality else None,
            "hypothesis_words": self.quality.loops.words if self.quality else None,
            "mid_sentence_breaks": self.quality.mid_sentence_breaks if self.quality else None,
            "tentative_states": self.repeats.tentative_states if self.repeats else None,
            "tentative_repeating": self.repeats.repeating if self.repeats else None,
            "tentative_repeat_share": self.repeats.share if self.repeats else None,
            **_latency_row("commit_latency", self.latency.commit),
            **_latency_row("first_seen_latency", self.latency.first_seen),
            "commit_latency_per_minute": [
                {"start_s": start, "p50_s": p50, "words": n}
                for start, p50, n in self.latency.commit_per_minute
            ],
            "flicker_states": self.flicker.states,
            "flicker_revisions": self.flicker.revisions,
            "flicker_final_words": self.flicker.final_words,
            "revisions_per_word": self.flicker.revisions_per_word,
            "committed_rewrites": self.flicker.committed_rewrites,
            **_speed_row(self.speed),
        }
        return json_safe(row)


def _counts_row(prefix: str, counts: _AlignmentCounts | None) -> dict[str, Any]:
    keys = ("substitutions", "deletions", "insertions", "hits")
    return {f"{prefix}_{k}": getattr(counts, k) if counts else None for k in keys}


def _latency_row(prefix: str, s: LatencySummary) -> dict[str, Any]:
    return {
        f"{prefix}_words": s.words,
        f"{prefix}_p50_s": s.p50,
        f"{prefix}_p90_s": s.p90,
        f"{prefix}_p99_s": s.p99,
        f"{prefix}_max_s": s.max,
        f"{prefix}_first_minute_p50_s": s.first_minute_p50,
        f"{prefix}_last_minute_p50_s": s.last_minute_p50,
        f"{prefix}_drift_s": s.drift_s,
    }


def _speed_row(speed: SpeedStats | None) -> dict[str, Any]:
    keys = ("audio_s", "wall_s", "decode_s", "cpu_s", "peak_rss_mb", "streams")
    row: dict[str, Any] = {k: getattr(speed, k) if speed else None for k in keys}
    row["rtf"] = speed.rtf if speed else None
    row["cpu_per_audio_s"] = speed.cpu_per_audio_s if speed else None
    return row
