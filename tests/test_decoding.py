"""The decoding core both engines share: fallback rule, loop collapse, word timing, languages."""

from __future__ import annotations

import numpy as np
import pytest

from bot.asr.decoding import (
    MAX_PROMPT_TOKENS,
    Decoded,
    DecodeOptions,
    collapse_repetitions,
    compression_ratio,
    cut_word_loops,
    decode_with_fallback,
    is_anomaly,
    is_silence,
    needs_fallback,
    prompt_tokens,
    settle_words,
)
from bot.asr.engine import Window
from bot.asr.languages import LanguageSupport
from bot.asr.models import resolve_model
from bot.asr.tokens import Tokenizers
from bot.asr.words import WordTiming, merge_punctuation, window_words, word_timings
from bot.errors import ConfigError
from bot.languages import LANGUAGE_CODES
from bot.messages import Word
from bot.text import ends_sentence

OPTIONS = DecodeOptions()
LOOP = "And so my fellow Americans. " * 6
SENTENCE = "And so my fellow Americans, ask not what your country can do for you."


def decoded(
    avg_logprob: float = -0.3,
    no_speech: float = 0.1,
    text: str = SENTENCE,
    temperature: float = 0.0,
) -> Decoded:
    return Decoded([1, 2, 3], avg_logprob, compression_ratio(text), no_speech, temperature)


def words(line: str) -> tuple[Word, ...]:
    return tuple(Word(" " + w, i, i + 0.5) for i, w in enumerate(line.split()))


def joined(ws) -> str:
    return "".join(w.text for w in ws).strip()


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    path = resolve_model("tiny.en").path / "tokenizer.json"
    return Tokenizers(Tokenizer.from_file(str(path)), multilingual=False).get("transcribe", "en")


# -- the fallback rule -----------------------------------------------------------------------------


def test_a_looping_text_compresses_far_better_than_speech() -> None:
    assert compression_ratio(LOOP) > OPTIONS.compression_ratio_threshold
    assert compression_ratio(SENTENCE) < OPTIONS.compression_ratio_threshold
    assert compression_ratio("") == 0.0


def test_repetitive_or_improbable_text_is_decoded_again() -> None:
    assert needs_fallback(decoded(text=LOOP), OPTIONS)
    assert needs_fallback(decoded(avg_logprob=-1.5), OPTIONS)
    assert not needs_fallback(decoded(), OPTIONS)


def test_silence_is_never_decoded_again_nor_shown() -> None:
    """No speech and an improbable text is silence: sampling it again only invents words."""
    silent = decoded(avg_logprob=-1.5, no_speech=0.9)
    assert is_silence(silent, OPTIONS)
    assert not needs_fallback(silent, OPTIONS)
    assert settle_words(words("thank you"), silent, OPTIONS) == ((), False)
    # A confident text is speech, however high the no-speech probability.
    assert not is_silence(decoded(avg_logprob=-0.2, no_speech=0.9), OPTIONS)


def test_only_failing_rows_are_decoded_again_and_the_most_probable_decode_is_kept() -> None:
    script = {
        0.0: {0: decoded(), 1: decoded(text=LOOP, avg_logprob=-0.8), 2: decoded(-1.2, 0.9)},
        0.4: {1: decoded(avg_logprob=-0.4, temperature=0.4)},
    }
    calls = []

    def generate(rows: list[int], temperature: float, with_prompt: bool) -> list[Decoded]:
        calls.append((rows, temperature))
        return [script[temperature][r] for r in rows]

    best = decode_with_fallback(3, OPTIONS, generate)
    assert calls == [([0, 1, 2], 0.0), ([1], 0.4)]  # row 2 is silence: not retried
    assert [b.temperature for b in best] == [0.0, 0.4, 0.0]


def test_a_row_failing_at_every_temperature_keeps_its_most_probable_decode() -> None:
    def generate(rows: list[int], temperature: float, with_prompt: bool) -> list[Decoded]:
        return [decoded(avg_logprob=-2.0 + (0.5 if temperature == 0.4 else 0), text=LOOP)]

    (best,) = decode_with_fallback(1, OPTIONS, generate)
    assert best.avg_logprob == -1.5 and needs_fallback(best, OPTIONS)


# -- what is shown ---------------------------------------------------------------------------------


def test_decoding_loops_are_collapsed_but_ordinary_repeats_are_kept() -> None:
    assert joined(collapse_repetitions(words("the the the the end"))) == "the end"
    looped = words("so my fellow Americans. so my fellow Americans. ask not")
    once = collapse_repetitions(looped, times=2, min_words=3)
    assert joined(once) == "so my fellow Americans. ask not"
    ordinary = words("I think I think that we we should")
    assert collapse_repetitions(ordinary, times=2, min_words=3) == ordinary


def test_a_loop_inside_a_word_is_written_once_but_numbers_and_words_are_kept() -> None:
    looped = words("the back side of the Unabhängig" + "ig" * 30)
    shown, holds = settle_words(looped, decoded(), OPTIONS)
    assert joined(shown) == "the back side of the Unabhängig" and not holds
    failed, _ = settle_words(looped, decoded(avg_logprob=-1.2), OPTIONS)
    assert joined(failed) == "the back side of the Unabhängig"
    ordinary = words("Mississippi 100000 people said hahaha bookkeeper")
    assert cut_word_loops(ordinary) == ordinary
    assert settle_words(ordinary, decoded(), OPTIONS) == (ordinary, True)


def test_an_improbable_decode_of_words_the_model_did_not_hear_is_not_shown() -> None:
    unheard = (
        Word(" The", 0.0, 0.38, 0.005),
        Word(" hospital", 0.38, 0.38, 0.0),
        Word(" has", 0.38, 0.72, 0.054),
    )
    assert is_anomaly(unheard)
    assert settle_words(unheard, decoded(avg_logprob=-1.2), OPTIONS) == ((), False)
    # A translation's words are not the audio's: their times and probabilities say little.
    assert settle_words(unheard, decoded(avg_logprob=-1.2), OPTIONS, "translate")[0] == unheard
    # A sample that passed where the greedy decode failed is no better heard.
    assert settle_words(unheard, decoded(temperature=0.4), OPTIONS) == ((), False)
    # A greedy decode that passes keeps them (the next window or a pause decides), and an
    # improbable decode keeps the words the model heard.
    assert settle_words(unheard, decoded(), OPTIONS)[0] == unheard
    heard = words("the hospital has followed protocol")
    assert not is_anomaly(heard)
    assert settle_words(heard, decoded(avg_logprob=-1.2), OPTIONS)[0] == heard
    # A loop's copies have no length, and its first copy was heard (tiny.en, "seven of clubs").
    looped = (
        Word(" 7", 0.0, 0.44, 0.59),
        Word(" of", 0.44, 0.72, 0.71),
        Word(" clubs,", 0.72, 0.88, 0.76),
        *(Word(w, 0.88, 0.88, 0.9) for w in (" 7", " of", " clubs,") * 2),
    )
    assert is_anomaly(looped)
    assert joined(settle_words(looped, decoded(temperature=0.8), OPTIONS)[0]) == "7 of clubs,"
    # One unsure word among sure ones is no anomaly; one unsure word alone is.
    assert not is_anomaly((*heard, Word(" Bruce.", 9.0, 9.3, 0.05)))
    assert is_anomaly((Word(" Bruce.", 9.0, 9.3, 0.05),))


def test_segment_ends_hold_only_while_nothing_was_collapsed_or_retried() -> None:
    looped = words("so my fellow Americans. so my fellow Americans.")
    assert settle_words(words("ask not what"), decoded(), OPTIONS)[1]
    assert not settle_words(looped, decoded(), OPTIONS)[1]
    shown, holds = settle_words(words("a a a a b"), decoded(avg_logprob=-1.2), OPTIONS)
    assert joined(shown) == "a b" and not holds


def test_the_prompt_keeps_the_most_recent_tokens(tokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(100))
    tokens = prompt_tokens(tokenizer, text, 16)
    assert len(tokens) == 16 and tokenizer.decode(tokens).endswith("word99")
    assert prompt_tokens(tokenizer, "   ", 16) == []
    assert prompt_tokens(tokenizer, text, 0) == []


def test_options_outside_what_the_engines_take_are_refused() -> None:
    limit = MAX_PROMPT_TOKENS
    with pytest.raises(ConfigError, match=f"max_prompt_tokens 100 is outside 0..{limit}"):
        DecodeOptions(max_prompt_tokens=100)
    with pytest.raises(ConfigError, match="^beam size 0"):
        DecodeOptions(beam_size=0)
    with pytest.raises(ConfigError, match="^translate beam size 0"):
        DecodeOptions(translate_beam_size=0)
    assert DecodeOptions(translate_beam_size=5).beam_for("translate") == 5
    assert DecodeOptions(translate_beam_size=5).beam_for("transcribe") == 1
    with pytest.raises(ConfigError, match="temperatures is empty"):
        DecodeOptions(temperatures=())


# -- word timing -----------------------------------------------------------------------------------


def test_timing_rows_follow_the_tokens_of_each_word(tokenizer) -> None:
    tokens = tokenizer.encode(" Ask not what your country can do.")
    starts = np.arange(len(tokens)) * 0.4
    rows = word_timings(tokenizer, tokens, starts, [0.9] * len(tokens))
    assert "".join(r.text for r in rows) == " Ask not what your country can do."
    assert sum(len(r.tokens) for r in rows) == len(tokens)
    assert [r.start for r in rows] == sorted(r.start for r in rows)
    # A word ends where the next one starts.
    assert all(a.end == b.start for a, b in zip(rows, rows[1:]))
    assert all(r.probability == pytest.approx(0.9) for r in rows)


def test_missing_token_times_repeat_the_last_one(tokenizer) -> None:
    tokens = tokenizer.encode(" one two three")
    rows = word_timings(tokenizer, tokens, np.array([0.0, 0.5]), [1.0] * len(tokens))
    assert [r.start for r in rows] == [0.0, 0.5, 0.5]
    assert word_timings(tokenizer, tokens, np.array([]), [1.0] * len(tokens)) == []


def timing(text: str, start: float, end: float, tokens: tuple[int, ...] = (1,)) -> WordTiming:
    return WordTiming(text, tokens, start, end, 0.9)


def test_lone_punctuation_joins_its_neighbour_with_its_tokens() -> None:
    rows = [
        timing(" He", 0.0, 0.3),
        timing(" said", 0.3, 0.6),
        timing(",", 0.6, 0.7, (7,)),
        timing(' "', 0.8, 0.9, (8,)),
        timing("yes", 0.9, 1.2),
        timing('."', 1.2, 1.3, (9, 10)),
    ]
    merged = merge_punctuation(rows)
    assert [m.text for m in merged] == [" He", " said,", "", "", ' "yes."', ""]
    assert merged[1].tokens == (1, 7)
    assert merged[4].tokens == (8, 1, 9, 10) and merged[4].start == 0.8
    assert sum(len(m.tokens) for m in merged) == sum(len(r.tokens) for r in rows)


def test_window_words_drop_the_silent_tail_and_keep_segment_ends() -> None:
    rows = [
        timing(" Ask", 0.0, 0.4, (1,)),
        timing(" not", 0.4, 0.8, (2,)),
        timing(".", 0.8, 0.9, (3,)),
        timing(" What", 1.0, 1.5, (4, 5)),
        timing(" you", 2.96, 3.2, (6,)),  # starts in the last 50 ms of a 3 s window
    ]
    shown, segment_ends = window_words(rows, 3.0, segment_token_ends=frozenset({3, 5}))
    assert [w.text for w in shown] == [" Ask", " not.", " What"]
    assert segment_ends == (1, 2)
    assert all(w.end <= 3.0 for w in shown)


def test_a_word_smeared_over_a_pause_is_capped() -> None:
    rows = [
        timing(" one", 0.0, 0.3),
        timing(" two", 0.3, 0.6),
        timing(" three.", 0.6, 4.0),  # ends a sentence: keeps its start
    ]
    shown, _ = window_words(rows, 5.0)
    assert shown[-1].start == 0.6 and shown[-1].end == pytest.approx(1.2)


# -- languages and shared text rules ---------------------------------------------------------------


def test_language_codes_are_the_tokens_of_a_multilingual_vocabulary() -> None:
    from tokenizers import Tokenizer

    path = resolve_model("base").path / "tokenizer.json"
    tokens = Tokenizers(Tokenizer.from_file(str(path)), multilingual=True)
    ids = [tokens.language_token(code) for code in LANGUAGE_CODES]
    assert len(set(LANGUAGE_CODES)) == len(LANGUAGE_CODES) == 100
    assert LANGUAGE_CODES[0] == "en" and {"de", "es", "fr", "pt"} <= set(LANGUAGE_CODES)
    known = [i for i in ids if i is not None]
    assert len(known) >= 99 and known == sorted(known)  # base lacks only large-v3's yue


def test_tasks_and_languages_a_model_cannot_do_are_one_line() -> None:
    english_only = LanguageSupport("tiny.en", multilingual=False, supported=("en",))
    english_only.check("translate", None)
    with pytest.raises(ConfigError, match="English-only; language 'de'"):
        english_only.check("transcribe", "de")
    with pytest.raises(ConfigError, match="unknown task 'summarize'"):
        english_only.check_windows([Window(np.zeros(10, np.float32), "summarize")])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown language 'xx'"):
        LanguageSupport("base", True, LANGUAGE_CODES).check("transcribe", "xx")


def test_a_sentence_ends_at_its_mark_even_before_a_closing_quote() -> None:
    assert ends_sentence(" done.") and ends_sentence(' "Really?"') and ends_sentence("终于。")
    assert not ends_sentence(" and,") and not ends_sentence("") and not ends_sentence(" Mr")


def test_a_row_looping_with_its_prompt_is_decoded_again_without_it_before_sampling() -> None:
    """The previous-text prompt is what leads a short window into a loop: the same greedy
    decode without it comes first, and a passing decode beats a more probable loop."""
    calls = []

    def generate(rows: list[int], temperature: float, with_prompt: bool) -> list[Decoded]:
        calls.append((rows, temperature, with_prompt))
        if with_prompt:
            return [decoded(text=LOOP, avg_logprob=-0.1) if r < 2 else decoded() for r in rows]
        assert 2 not in rows
        return [decoded(text=LOOP) if r == 1 else decoded(avg_logprob=-0.6) for r in rows]

    best = decode_with_fallback(3, OPTIONS, generate, prompted=[True, True, False])
    assert calls == [
        ([0, 1, 2], 0.0, True),  # one call: row 2 has no prompt to drop
        ([0, 1], 0.0, False),  # the loops, at the same temperature, unprompted
        ([1], 0.4, False),  # still looping: sampled, and not prompted again
        ([1], 0.8, False),
    ]
    assert best[0].avg_logprob == -0.6 and not needs_fallback(best[0], OPTIONS)
    assert needs_fallback(best[1], OPTIONS) and not needs_fallback(best[2], OPTIONS)
