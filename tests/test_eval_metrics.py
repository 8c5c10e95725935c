"""Evaluation metrics: error rates, translation scores, flicker, latency and speed of one item."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import sacrebleu
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from bot.eval.latency import first_seen_latencies, item_latency, pooled_latency
from bot.eval.metrics import (
    CharErrorCounts,
    ErrorCounts,
    FlickerStats,
    ItemMetrics,
    ResourceUsage,
    SpeedStats,
    TentativeRepeats,
    TranslationPair,
    TranslationScores,
    char_error,
    corpus_translation_scores,
    flicker,
    is_written,
    mid_sentence_breaks,
    normalizer_for,
    output_language,
    peak_rss_mb,
    plain_words,
    pool,
    primary_metric,
    repeated_ngram_loops,
    same_language,
    sentence_translation_scores,
    tentative_repeats,
    translation_scores,
    word_error,
    written_error,
    written_tokens,
)
from bot.messages import CommittedWord
from bot.outputs.transcript import CaptionState

# Real references of several languages (and casings) from ../shared/data/manifest.jsonl.
SPACED_ITEMS = [
    "ljspeech_LJ001-0101",
    "lhotse_librispeech_2412-153948-0000",
    "fleurs_de_000",
    "fleurs_fr_002",
    "thorsten_2b0d202f",
    "picovoice_leopard_test_es",
]


def perturbed(text: str) -> str:
    """A hypothesis with one deletion, one substitution and one insertion."""
    words = text.split()
    del words[1]
    words[len(words) // 2] = "zebra"
    words.insert(0, "giraffe")
    return " ".join(words)


def without_spaces(text: str) -> str:
    return "".join(text.split())


def word(end: float, commit_after: float, seen_after: float | None = None) -> CommittedWord:
    """A committed word ending at `end` that froze `commit_after` seconds later."""
    seen = commit_after if seen_after is None else seen_after
    return CommittedWord(" w", end - 0.3, end, 1.0, end + seen, end + commit_after)


def states(*pairs: tuple[str, str]) -> list[CaptionState]:
    return [CaptionState(float(t), c, tent) for t, (c, tent) in enumerate(pairs)]


# ---------------------------------------------------------------------------------------------
# Normalization


def test_english_uses_whisper_english_normalizer_so_spoken_numbers_equal_digits():
    assert isinstance(normalizer_for("en"), EnglishTextNormalizer)
    assert isinstance(normalizer_for("en-US"), EnglishTextNormalizer)
    counts = word_error(
        "It improved in the last fifty years.", "it improved in the last 50 years", "en"
    )
    assert counts.wer == 0.0


def test_other_languages_use_the_basic_normalizer_which_keeps_diacritics():
    assert isinstance(normalizer_for("de"), BasicTextNormalizer)
    assert isinstance(normalizer_for(None), BasicTextNormalizer)
    german = word_error("Für die Türen.", "fur die turen", "de")
    assert (german.substitutions, german.hits) == (2, 1)
    assert word_error("Für die Türen.", "fur die turen", "en").wer == 0.0


def test_case_and_punctuation_do_not_count_as_errors():
    assert word_error("The cat, sat.", "the cat sat", "en").wer == 0.0
    assert word_error("Die Türen, nicht rund!", "die türen nicht rund", "de").wer == 0.0


def test_cer_is_primary_for_languages_written_without_spaces():
    assert primary_metric("ja") == "cer"
    assert primary_metric("zh-CN") == "cer"
    assert primary_metric("yue") == "cer"
    assert primary_metric("en") == "wer"
    assert primary_metric("de") == "wer"
    assert primary_metric(None) == "wer"


# ---------------------------------------------------------------------------------------------
# Word and character errors


def test_an_extra_word_is_one_insertion():
    counts = word_error("the cat sat", "the cat sat down", "en")
    assert counts == ErrorCounts(substitutions=0, deletions=0, insertions=1, hits=3)
    assert counts.reference_words == 3
    assert counts.wer == pytest.approx(1 / 3)


def test_an_empty_hypothesis_is_all_deletions():
    counts = word_error("the cat sat", "", "en")
    assert counts == ErrorCounts(substitutions=0, deletions=3, insertions=0, hits=0)
    assert counts.wer == 1.0
    assert char_error("the cat sat", "", "en").deletions == len("thecatsat")


@pytest.mark.parametrize("reference", ["", "   ", "¿?"])
def test_an_empty_reference_cannot_be_scored(reference):
    with pytest.raises(ValueError, match="empty after normalization"):
        word_error(reference, "hola", "es")
    with pytest.raises(ValueError, match="empty after normalization"):
        char_error(reference, "hola", "es")


def test_pooled_wer_weighs_items_by_their_reference_words_not_a_mean_of_rates():
    long_right = word_error("the cat sat down", "the cat sat down", "en")  # 0 of 4
    short_wrong = word_error("hello", "", "en")  # 1 of 1
    pooled = pool([long_right, short_wrong])
    assert pooled == ErrorCounts(substitutions=0, deletions=1, insertions=0, hits=4)
    assert pooled.wer == pytest.approx(1 / 5)
    assert (long_right.wer + short_wrong.wer) / 2 == pytest.approx(0.5)


def test_pooling_keeps_words_and_characters_apart():
    chars = char_error("the cat", "the cap", "en")
    assert isinstance(pool([chars, chars]), CharErrorCounts)
    assert pool([chars, chars]).cer == chars.cer
    with pytest.raises(TypeError):
        pool([word_error("the cat", "the cap", "en"), chars])
    with pytest.raises(ValueError, match="no error counts"):
        pool([])


def test_cer_ignores_spaces_so_word_boundaries_only_count_in_wer():
    assert char_error("the cat", "thecat", "en").cer == 0.0
    assert word_error("the cat", "thecat", "en").wer == 1.0


def test_cer_of_japanese_counts_characters_without_the_final_punctuation():
    reference = "客観的実在の判断的知識が成立するのである。"
    counts = char_error(reference, "客観的実在の判断的知識が成立するのであろ", "ja")
    assert counts == CharErrorCounts(substitutions=1, deletions=0, insertions=0, hits=19)
    assert counts.reference_chars == 20


def test_error_rates_agree_with_jiwer_on_normalized_real_references(manifest):
    references, hypotheses, counts = [], [], []
    for item_id in SPACED_ITEMS:
        row = manifest[item_id]
        reference, hypothesis = row["text"], perturbed(row["text"])
        normalize = normalizer_for(row["language"])
        ref, hyp = normalize(reference), normalize(hypothesis)

        words = word_error(reference, hypothesis, row["language"])
        assert words.errors >= 3
        assert words.wer == pytest.approx(jiwer.wer(ref, hyp))
        chars = char_error(reference, hypothesis, row["language"])
        assert chars.cer == pytest.approx(jiwer.cer(without_spaces(ref), without_spaces(hyp)))

        references.append(ref)
        hypotheses.append(hyp)
        counts.append(words)
    # jiwer over a list of sentences is the corpus (pooled) WER.
    assert pool(counts).wer == pytest.approx(jiwer.wer(references, hypotheses))


def test_japanese_cer_agrees_with_jiwer_on_a_real_reference(manifest):
    reference = manifest["picovoice_leopard_test_ja"]["text"]
    hypothesis = reference[:3] + reference[4:8] + "猫" + reference[8:]
    normalize = normalizer_for("ja")
    expected = jiwer.cer(
        without_spaces(normalize(reference)), without_spaces(normalize(hypothesis))
    )
    assert expected > 0
    assert char_error(reference, hypothesis, "ja").cer == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Translation quality


def test_identical_translations_score_100():
    texts = ["the cat sat on the mat today", "a quick brown fox jumps over the dog"]
    assert translation_scores(texts, texts) == TranslationScores(
        bleu=pytest.approx(100.0), chrf=pytest.approx(100.0)
    )
    assert sentence_translation_scores(texts[0], texts[0]) == TranslationScores(
        bleu=pytest.approx(100.0), chrf=pytest.approx(100.0)
    )


def test_translation_scores_agree_with_sacrebleu(manifest):
    references = [manifest[i]["text"] for i in SPACED_ITEMS if manifest[i]["language"] == "en"]
    hypotheses = [perturbed(r) for r in references]
    scores = translation_scores(references, hypotheses)
    assert 0 < scores.bleu < 100
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    one = sentence_translation_scores(references[0], hypotheses[0])
    assert one.bleu == pytest.approx(sacrebleu.sentence_bleu(hypotheses[0], [references[0]]).score)
    assert one.chrf == pytest.approx(sacrebleu.sentence_chrf(hypotheses[0], [references[0]]).score)


def test_translation_scores_need_one_reference_per_translation():
    with pytest.raises(ValueError, match="one reference per translation"):
        translation_scores(["a b c d"], ["a b c d", "e f g h"])


def test_corpus_translation_scores_pool_the_pairs_not_a_mean_of_sentences(manifest):
    pairs = [
        TranslationPair(manifest[i]["translation"], perturbed(manifest[i]["translation"]))
        for i in ("fleurs_de_000", "fleurs_es_006", "fleurs_pt_002")
    ]
    scores = corpus_translation_scores(pairs)
    expected = translation_scores([p.reference for p in pairs], [p.hypothesis for p in pairs])
    assert scores == expected
    mean_bleu = sum(sentence_translation_scores(p.reference, p.hypothesis).bleu for p in pairs) / 3
    assert scores.bleu != pytest.approx(mean_bleu)
    assert corpus_translation_scores([]) is None


# ---------------------------------------------------------------------------------------------
# Which family of metrics applies


def test_translating_writes_english_and_transcribing_writes_the_speech_language():
    assert output_language("de", "translate") == "en"
    assert output_language("en", "translate") == "en"
    assert output_language("de", "transcribe") == "de"
    assert same_language(output_language("en-US", "translate"), "en-US")
    assert not same_language(output_language("de", "translate"), "de")
    assert not same_language(None, None)


# ---------------------------------------------------------------------------------------------
# The text as written: case and punctuation


def test_written_tokens_keep_case_and_give_each_punctuation_mark_its_own_token():
    assert written_tokens("It’s 1469-1470, “Italy”.") == [
        "It's",
        "1469-1470",
        ",",
        '"',
        "Italy",
        '"',
        ".",
    ]


def test_written_error_counts_case_and_punctuation_that_normalized_wer_ignores(manifest):
    reference = manifest["ljspeech_LJ001-0120"]["text"]  # "In the old print ..., and one ...;"
    hypothesis = reference.lower().replace(",", "")
    assert word_error(reference, hypothesis, "en").wer == 0.0
    counts = written_error(reference, hypothesis)
    commas = reference.count(",")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, commas, 0)
    assert counts.reference_words == len(written_tokens(reference))
    assert written_error(reference, reference).wer == 0.0


def test_a_missing_comma_is_one_deletion_not_a_wrong_word():
    counts = written_error("Italy, is contentedly stagnant.", "Italy is contentedly stagnant.")
    assert (counts.substitutions, counts.deletions, counts.hits) == (0, 1, 5)


def test_only_references_with_case_and_punctuation_are_written(manifest):
    assert is_written(manifest["ljspeech_LJ001-0104"]["text"])  # Italy is contentedly stagnant.
    assert is_written(manifest["thorsten_2b0d202f"]["text"])
    assert is_written(manifest["picovoice_leopard_test_ja"]["text"])  # no case, has "。"
    assert not is_written(manifest["fleurs_fr_002"]["text"])  # normalized: lower case
    assert not is_written(manifest["lhotse_librispeech_2412-153948-0000"]["text"])  # upper
    assert not is_written(manifest["pocketsphinx_cards_005"]["text"])  # no punctuation


# ---------------------------------------------------------------------------------------------
# Streaming artefacts: loops, tentative repeats, mid-sentence breaks


def test_plain_words_ignore_case_and_edge_punctuation():
    assert plain_words("Not, not! 1469-1470. ¿Cierto? —") == [
        "not",
        "not",
        "1469-1470",
        "cierto",
    ]


def test_an_ngram_shown_twice_back_to_back_is_one_loop(manifest):
    reference = manifest["ljspeech_LJ001-0101"]["text"]
    assert repeated_ngram_loops(reference).loops == 0
    words = reference.split()
    looped = " ".join(words[:5] + words[2:5] + words[5:])  # three words shown again
    stats = repeated_ngram_loops(looped)
    assert (stats.loops, stats.repeated_words, stats.words) == (1, 3, len(words) + 3)


def test_loops_as_the_issue_shows_them():
    assert repeated_ngram_loops("in 1469-1470. 1469-1470. he").loops == 1
    assert repeated_ngram_loops("this is not not true").loops == 1
    many = repeated_ngram_loops("a b a b a b c")
    assert (many.loops, many.repeated_words) == (1, 4)
    assert repeated_ngram_loops("the cat the dog").loops == 0  # not back to back
    assert repeated_ngram_loops("").loops == 0


def test_natural_repetitions_in_real_references_count_as_loops(manifest):
    """The count is compared between systems on the same audio, not against zero."""
    assert repeated_ngram_loops(manifest["pocketsphinx_cards_004"]["text"]).loops == 1  # five five
    long = repeated_ngram_loops(manifest["ljspeech_LJ001-0140_0186_long"]["text"])
    assert (long.loops, long.repeated_words) == (1, 2)  # "off the paper the paper on which"


def test_a_tentative_tail_starting_with_the_last_committed_words_repeats_them():
    stats = tentative_repeats(
        states(
            ("", "The cat"),
            ("The cat", "cat sat"),  # repeats "cat"
            ("The cat sat", "Cat sat on"),  # repeats "cat sat", case ignored
            ("The cat sat on", "the mat"),
            ("The cat sat on the mat.", ""),  # no tentative tail: not counted
        )
    )
    assert stats == TentativeRepeats(tentative_states=4, repeating=2)
    assert stats.share == pytest.approx(0.5)


def test_a_repeat_needs_the_first_tentative_words_not_any_overlap():
    stats = tentative_repeats(states(("the cat sat", "on the cat"), ("the cat sat", "down sat")))
    assert stats.repeating == 0
    assert math.isnan(tentative_repeats(states(("the cat", ""))).share)


def test_tentative_repeats_see_the_end_of_a_long_committed_text(manifest):
    committed = manifest["ljspeech_LJ001-0001_0045_long"]["text"]
    last = committed.split()[-2:]
    stats = tentative_repeats(states((committed, " ".join(last) + " and more")))
    assert stats.repeating == 1


def test_a_sentence_end_followed_by_a_lowercase_word_is_a_mid_sentence_break(manifest):
    # Real references: LJ Speech's "thereunder. in this regard", FLEURS's "servis. cela".
    assert mid_sentence_breaks(manifest["speechbrain_LJ050-0131"]["text"]) == 1
    assert mid_sentence_breaks(manifest["fleurs_fr_001"]["text"]) == 1
    assert mid_sentence_breaks(manifest["ljspeech_LJ001-0101"]["text"]) == 0
    assert mid_sentence_breaks("The cat. sat on the mat. The dog sat.") == 1
    assert mid_sentence_breaks("¿Qué? sí. “Wow.” then") == 2


def test_ellipses_abbreviations_and_scripts_without_case_are_not_breaks():
    assert mid_sentence_breaks("and then... we went… home") == 0
    assert mid_sentence_breaks("tools, e.g. hammers, built in 3 a.c. by") == 0
    assert mid_sentence_breaks("客観的実在の。判断的知識が成立する。") == 0


# ---------------------------------------------------------------------------------------------
# Flicker


def test_tentative_text_that_only_grows_has_no_revisions():
    stats = flicker(states(("", "the"), ("", "the cat"), ("the", "cat sat"), ("the cat sat", "")))
    assert stats == FlickerStats(states=4, revisions=0, final_words=3, committed_rewrites=0)
    assert stats.revisions_per_word == 0.0


def test_a_changed_tentative_word_is_one_revision():
    stats = flicker(states(("", "the cap"), ("", "the cat"), ("the cat", "")))
    assert stats.revisions == 1
    assert stats.revisions_per_word == pytest.approx(1 / 2)


def test_a_tentative_word_committed_differently_is_a_revision():
    assert flicker(states(("", "the cap sat"), ("the cat", "sat"))).revisions == 1


def test_a_tentative_word_that_vanishes_is_a_revision():
    assert flicker(states(("the", "cat sat"), ("the", "cat"))).revisions == 1
    assert flicker(states(("the", "cat sat"), ("the", ""))).revisions == 2


def test_rewritten_committed_text_is_reported_not_counted_as_flicker():
    stats = flicker(states(("the cat", ""), ("the dog", "")))
    assert stats.committed_rewrites == 1
    assert stats.revisions == 0


def test_flicker_of_languages_without_spaces_counts_characters():
    grows = flicker(states(("", "客観"), ("", "客観的"), ("客観的", "実在")), language="ja")
    assert grows == FlickerStats(states=3, revisions=0, final_words=3, committed_rewrites=0)
    changed = flicker(states(("", "客観的"), ("", "主観的")), language="ja")
    assert changed.revisions == 1


def test_no_caption_states_means_no_flicker_and_no_rate():
    stats = flicker([])
    assert stats == FlickerStats(states=0, revisions=0, final_words=0, committed_rewrites=0)
    assert math.isnan(stats.revisions_per_word)


# ---------------------------------------------------------------------------------------------
# Latency


def test_item_latency_has_commit_and_first_seen_percentiles():
    words = [
        word(end, commit_after=lat, seen_after=lat / 2) for end, lat in enumerate([1, 2, 3, 4, 5])
    ]
    latency = item_latency(words)
    assert (latency.commit.p50, latency.commit.p90, latency.commit.p99, latency.commit.max) == (
        pytest.approx(3.0),
        pytest.approx(4.6),
        pytest.approx(4.96),
        pytest.approx(5.0),
    )
    assert latency.first_seen.p50 == pytest.approx(1.5)
    assert latency.first_seen.max == pytest.approx(2.5)


def test_item_latency_reports_drift_and_the_median_per_minute():
    early = [word(end, commit_after=1.0) for end in (5.0, 20.0, 40.0)]
    middle = [word(90.0, commit_after=2.0)]
    late = [word(end, commit_after=3.0) for end in (130.0, 150.0, 170.0)]
    latency = item_latency(early + middle + late)
    assert latency.commit.first_minute_p50 == pytest.approx(1.0)
    assert latency.commit.last_minute_p50 == pytest.approx(3.0)
    assert latency.commit.drift_s == pytest.approx(2.0)
    assert latency.commit_per_minute == ((0.0, 1.0, 3), (60.0, 2.0, 1), (120.0, 3.0, 3))


def test_pooled_latency_takes_percentiles_over_all_words_of_all_items():
    short = [word(1.0, commit_after=10.0)]
    long = [word(end, commit_after=lat) for end, lat in [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]]
    pooled = pooled_latency([short, long])
    assert pooled.words == 4
    assert pooled.p50 == pytest.approx(2.5)  # not the mean of the item medians (6.0)
    assert pooled.max == pytest.approx(10.0)
    seen = pooled_latency([[word(1.0, commit_after=4.0, seen_after=0.5)]], first_seen_latencies)
    assert seen.p50 == pytest.approx(0.5)


def test_pooled_latency_of_no_words_is_nan():
    pooled = pooled_latency([[], []])
    assert pooled.words == 0
    assert math.isnan(pooled.p50)
    assert pooled_latency([]).words == 0


# ---------------------------------------------------------------------------------------------
# Speed


def test_speed_is_reported_per_second_of_audio():
    speed = SpeedStats(
        audio_s=100.0, wall_s=30.0, decode_s=20.0, cpu_s=50.0, peak_rss_mb=800.0, streams=2
    )
    assert speed.rtf == pytest.approx(0.2)
    assert speed.cpu_per_audio_s == pytest.approx(0.5)
    silent = SpeedStats(
        audio_s=0.0, wall_s=1.0, decode_s=0.0, cpu_s=1.0, peak_rss_mb=1.0, streams=1
    )
    assert math.isnan(silent.rtf)


def test_resource_usage_measures_cpu_spent_between_two_moments():
    start = ResourceUsage.now()
    busy_until = time.process_time() + 0.05
    while time.process_time() < busy_until:
        pass
    used = ResourceUsage.now().since(start)
    assert used.cpu_s >= 0.04
    assert used.wall_s >= 0.04


def test_peak_rss_is_in_mebibytes():
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("needs /proc/self/status (Linux) to read the resident memory")
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched so it is resident
    rss_kib = next(
        int(line.split()[1])
        for line in status.read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    rss_mb = rss_kib / 1024
    assert rss_mb >= 64
    # The kernel updates the peak in batches of pages: allow a little below the current RSS.
    assert 0.9 * rss_mb <= peak_rss_mb() < 1024 * 1024
    del block


# ---------------------------------------------------------------------------------------------
# One item's row in results.json


def item(language: str, translation: TranslationScores | None, speed: SpeedStats | None):
    reference, hypothesis = "客観的実在の判断的知識", "客観的実在の判断的知"
    if language != "ja":
        reference, hypothesis = "the cat sat down", "the cat sat"
    return ItemMetrics(
        id=f"item_{language}",
        language=language,
        duration_s=3.5,
        words=word_error(reference, hypothesis, language),
        chars=char_error(reference, hypothesis, language),
        latency=item_latency([]),  # no committed words: every latency is NaN
        flicker=flicker([]),
        translation=translation,
        speed=speed,
    )


def test_item_row_is_strict_json_with_nan_as_null():
    row = item("en", None, None).as_row()
    decoded = json.loads(json.dumps(row, allow_nan=False))
    assert decoded["id"] == "item_en"
    assert decoded["primary_metric"] == "wer"
    assert decoded["wer"] == pytest.approx(0.25)
    assert decoded["error_rate"] == decoded["wer"]
    assert decoded["word_deletions"] == 1
    assert decoded["commit_latency_p50_s"] is None
    assert decoded["revisions_per_word"] is None
    assert decoded["bleu"] is None
    assert decoded["rtf"] is None
    assert decoded["pc_wer"] is None and decoded["loops"] is None


def test_item_row_of_a_translation_has_no_wer_and_the_same_keys():
    bare = item("en", None, None)
    translated = ItemMetrics(
        id="item_de",
        language="de",
        duration_s=3.5,
        words=None,
        chars=None,
        latency=item_latency([]),
        flicker=flicker([]),
        translation=TranslationScores(bleu=40.0, chrf=60.0),
    )
    row = translated.as_row()
    assert list(row) == list(bare.as_row())
    assert row["wer"] is None and row["cer"] is None and row["error_rate"] is None
    assert (row["bleu"], row["chrf"]) == (40.0, 60.0)
    json.dumps(row, allow_nan=False)


def test_item_rows_have_the_same_keys_with_or_without_optional_results():
    speed = SpeedStats(
        audio_s=3.5, wall_s=2.0, decode_s=0.7, cpu_s=1.4, peak_rss_mb=500.0, streams=1
    )
    full = item("en", TranslationScores(bleu=40.0, chrf=60.0), speed).as_row()
    bare = item("en", None, None).as_row()
    assert list(full) == list(bare)
    assert all(key == key.lower() and " " not in key for key in full)
    assert (full["bleu"], full["chrf"], full["rtf"]) == (40.0, 60.0, pytest.approx(0.2))
    json.dumps(full, allow_nan=False)


def test_item_row_of_japanese_reports_cer_as_its_error_rate():
    metrics = item("ja", None, None)
    assert metrics.primary_metric == "cer"
    row = metrics.as_row()
    assert row["error_rate"] == row["cer"] == pytest.approx(1 / 11)


def test_item_row_carries_latency_flicker_and_translation_values():
    words = [word(end, commit_after=lat) for end, lat in [(1.0, 1.0), (2.0, 2.0), (70.0, 4.0)]]
    metrics = ItemMetrics(
        id="item",
        language="en",
        duration_s=71.0,
        words=word_error("the cat sat", "the cat sat", "en"),
        chars=char_error("the cat sat", "the cat sat", "en"),
        latency=item_latency(words),
        flicker=flicker(states(("", "the cap"), ("the cat", "sat"), ("the cat sat", ""))),
        translation=sentence_translation_scores("the cat sat on the mat", "the cat sat on the mat"),
    )
    row = metrics.as_row()
    assert row["commit_latency_words"] == 3
    assert row["commit_latency_p50_s"] == pytest.approx(2.0)
    assert row["commit_latency_max_s"] == pytest.approx(4.0)
    assert row["commit_latency_per_minute"] == [
        {"start_s": 0.0, "p50_s": pytest.approx(1.5), "words": 2},
        {"start_s": 60.0, "p50_s": pytest.approx(4.0), "words": 1},
    ]
    assert (row["flicker_states"], row["flicker_revisions"], row["flicker_final_words"]) == (
        3,
        1,
        3,
    )
    assert row["revisions_per_word"] == pytest.approx(1 / 3)
    assert row["committed_rewrites"] == 0
    assert row["bleu"] == pytest.approx(100.0)
    json.dumps(row, allow_nan=False)
