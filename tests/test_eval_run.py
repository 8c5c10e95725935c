"""`captionbot eval`: configurations compared on a dataset, the report and its numbers."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from conftest import english_wer

from bot.cli import main
from bot.eval.datasets import EvalItem
from bot.eval.metrics import written_error
from bot.eval.report import LANGUAGE_COLUMNS, language_rows, summary_rows, terminal_table
from bot.eval.runner import score_item

ITEMS = ["fw_jfk", "ljspeech_LJ001-0104", "pocketsphinx_cards_005"]


@pytest.fixture(scope="module")
def report(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    slow = folder / "slow-steps.yaml"
    slow.write_text("engine:\n  model: tiny.en\nstreaming:\n  min_step_s: 2.0\n")
    fast = folder / "quick-steps.yaml"
    fast.write_text("engine:\n  model: tiny.en\nstreaming:\n  min_step_s: 0.5\n")
    out = folder / "report"
    code = main(
        [
            "eval",
            str(shared_data / "manifest.jsonl"),
            "--ids",
            *ITEMS,
            "--config",
            str(fast),
            "--config",
            str(slow),
            "--fast",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    return code, out, json.loads((out / "results.json").read_text())


def test_results_hold_one_row_per_item_per_config_and_system(report):
    code, _, results = report
    assert code == 0
    assert results["schema"] == "captionbot.eval/2"
    keys = {(r["config"], r["system"], r["id"]) for r in results["rows"]}
    assert keys == {
        (c, s, i)
        for c in ("quick-steps", "slow-steps")
        for s in ("streaming", "offline")
        for i in ITEMS
    }
    for row in results["rows"]:
        assert 0 <= row["wer"] < 0.5
        if row["system"] == "streaming":
            assert row["commit_latency_p50_s"] > 0


def test_pooled_wer_matches_jiwer_on_the_written_transcripts(report, manifest):
    _, out, results = report
    for config in ("quick-steps", "slow-steps"):
        texts = {
            i: json.loads((out / "transcripts" / config / f"{i}.json").read_text())["text"]
            for i in ITEMS
        }
        reference = " ".join(manifest[i]["text"] for i in ITEMS)
        expected = english_wer(reference, " ".join(texts[i] for i in ITEMS))
        summary = next(
            s for s in results["summary"] if s["config"] == config and s["system"] == "streaming"
        )
        assert summary["wer"] == pytest.approx(expected, abs=0.02)


def test_larger_steps_commit_later(report):
    summary = {(s["config"], s["system"]): s for s in report[2]["summary"]}
    quick = summary[("quick-steps", "streaming")]["commit_p50_s"]
    slow = summary[("slow-steps", "streaming")]["commit_p50_s"]
    assert slow > quick


def test_terminal_table_shows_the_same_numbers_as_the_json(report, capsys):
    summary = report[2]["summary"]
    table = terminal_table(summary)
    for row in summary:
        line = next(
            text
            for text in table.splitlines()
            if text.startswith(row["config"]) and row["system"] in text
        )
        assert f"{100 * row['wer']:.2f}" in line
        if row["system"] == "streaming":
            assert f"{row['commit_p50_s']:.2f}" in line


def test_report_files_render_with_plots_and_provenance(report):
    _, out, results = report
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert html.count("<svg") >= 5 and "quick-steps" in html and "slow-steps" in html
    assert "| config | system |" in markdown and "## By language" in markdown
    for config in results["configs"].values():
        assert len(config["model_sha256"]) == 64
        assert config["config"]["engine"]["model"] == "tiny.en"
    assert results["packages"]["ctranslate2"] and results["machine"]["cpus"] >= 1
    assert results["date"]


def test_summary_rows_are_what_the_report_writes(report):
    assert all(isinstance(row["items"], int) for row in report[2]["summary"])
    assert summary_rows([]) == []
    assert language_rows([]) == []


# ---------------------------------------------------------------------------------------------
# Which metrics score an item (no model: the hypotheses are real reference texts)


def manifest_item(row: dict) -> EvalItem:
    return EvalItem(
        id=row["id"],
        audio=row["audio"],
        text=row["text"],
        language=row["language"],
        translation=row.get("translation"),
    )


def test_a_translation_is_scored_by_bleu_against_the_reference_translation_never_by_wer(
    manifest,
):
    german = manifest_item(manifest["fleurs_de_000"])
    metrics = score_item(german, "translate", german.translation, 17.9)
    assert metrics.words is None and metrics.chars is None and metrics.written is None
    assert metrics.translation.bleu == pytest.approx(100.0)
    assert metrics.translated.reference == german.translation


def test_english_speech_when_translating_is_scored_by_wer_against_its_transcript(manifest):
    english = manifest_item(manifest["ljspeech_LJ001-0104"])
    metrics = score_item(english, "translate", "Italy is contentedly stagnant", 2.4)
    assert metrics.words.wer == 0.0
    assert metrics.translation is None and metrics.translated is None
    assert metrics.written.deletions == 1  # the final period


def test_transcribing_scores_wer_in_every_language_and_no_bleu(manifest):
    german = manifest_item(manifest["fleurs_de_000"])
    metrics = score_item(german, "transcribe", german.text, 17.9)
    assert metrics.words.wer == 0.0
    assert metrics.translation is None


def test_speech_without_a_reference_translation_keeps_only_what_needs_no_reference(manifest):
    german = manifest_item(manifest["thorsten_gt_sample02"])
    metrics = score_item(german, "translate", "Your horn is annoying. Your horn is annoying.", 1.4)
    assert metrics.words is None and metrics.translation is None
    assert metrics.quality.loops.loops == 1


# ---------------------------------------------------------------------------------------------
# A multilingual run: translation and transcription side by side

MULTILINGUAL = ["ljspeech_LJ001-0104", "fleurs_es_006", "thorsten_gt_sample02"]


@pytest.fixture(scope="module")
def multilingual(shared_data, tmp_path_factory):
    """Multilingual base at the default settings (task translate), as a user runs it."""
    out = tmp_path_factory.mktemp("eval-translate") / "report"
    code = main(
        [
            "eval",
            str(shared_data / "manifest.jsonl"),
            "--ids",
            *MULTILINGUAL,
            "--model",
            "base",
            "--fast",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    return code, out, json.loads((out / "results.json").read_text())


def written_text(out, item_id: str) -> str:
    return json.loads((out / "transcripts" / "default" / f"{item_id}.json").read_text())["text"]


def test_summary_wer_is_the_english_items_and_bleu_the_translated_ones(multilingual, manifest):
    code, out, results = multilingual
    assert code == 0
    summary = {s["system"]: s for s in results["summary"]}["streaming"]
    english = manifest["ljspeech_LJ001-0104"]["text"]
    expected_wer = english_wer(english, written_text(out, "ljspeech_LJ001-0104"))
    assert summary["wer_items"] == 1 and summary["wer"] == pytest.approx(expected_wer)
    spanish = manifest["fleurs_es_006"]
    translation = written_text(out, "fleurs_es_006")
    assert summary["translated_items"] == 1
    assert summary["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([translation], [[spanish["translation"]]]).score
    )
    assert summary["chrf"] == pytest.approx(
        sacrebleu.corpus_chrf([translation], [[spanish["translation"]]]).score
    )
    assert summary["items"] == 3


def test_item_rows_carry_one_family_each(multilingual):
    rows = {(r["system"], r["id"]): r for r in multilingual[2]["rows"]}
    for system in ("streaming", "offline"):
        english, spanish = rows[(system, MULTILINGUAL[0])], rows[(system, MULTILINGUAL[1])]
        german = rows[(system, MULTILINGUAL[2])]
        assert english["wer"] is not None and english["bleu"] is None
        assert spanish["wer"] is None and spanish["bleu"] is not None and spanish["chrf"] > 0
        assert german["wer"] is None and german["bleu"] is None
        assert all(r["loops"] is not None for r in (english, spanish, german))


def test_written_form_is_scored_against_the_reference_and_the_offline_text(multilingual, manifest):
    _, out, results = multilingual
    rows = {(r["system"], r["id"]): r for r in results["rows"]}
    item_id = "ljspeech_LJ001-0104"
    streamed = written_text(out, item_id)
    offline = rows[("offline", item_id)]
    assert rows[("streaming", item_id)]["pc_wer"] == pytest.approx(
        written_error(manifest[item_id]["text"], streamed).wer
    )
    assert offline["pc_wer"] is not None and offline["pc_wer_vs_offline"] is None
    for item_id in MULTILINGUAL:
        streaming = rows[("streaming", item_id)]
        assert streaming["pc_wer_vs_offline"] is not None
        assert streaming["tentative_states"] > 0 and 0 <= streaming["tentative_repeat_share"] <= 1
    assert rows[("streaming", "fleurs_es_006")]["pc_wer"] is None  # a translation


def test_each_language_shows_both_families_in_every_report(multilingual):
    _, out, results = multilingual
    by_language = {(r["system"], r["language"]): r for r in results["by_language"]}
    assert set(by_language) == {
        (s, lang) for s in ("streaming", "offline") for lang in ["en", "es", "de"]
    }
    english, spanish = by_language[("streaming", "en")], by_language[("streaming", "es")]
    assert english["wer"] is not None and english["bleu"] is None
    assert spanish["wer"] is None and spanish["bleu"] is not None
    table = terminal_table(results["by_language"], LANGUAGE_COLUMNS)
    header = table.splitlines()[0]
    assert all(title in header for title in ("WER %", "BLEU", "chrF", "PC-WER %", "loops"))
    spanish_line = next(
        line for line in table.splitlines() if " es " in line and "streaming" in line
    )
    assert f"{spanish['bleu']:.2f}" in spanish_line and f"{spanish['chrf']:.2f}" in spanish_line
    markdown = (out / "report.md").read_text()
    assert f"| {spanish['bleu']:.2f} | {spanish['chrf']:.2f} |" in markdown
    html = (out / "report.html").read_text()
    assert "By language" in html and f"<td>{spanish['chrf']:.2f}</td>" in html


def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    code = main(["eval", str(tmp_path / "nothing.jsonl"), "--out", str(tmp_path / "r")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "nothing.jsonl" in error and "\n" not in error
    assert "Traceback" not in error
