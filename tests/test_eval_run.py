"""`captionbot eval`: configurations compared on a dataset, the report and its numbers."""

from __future__ import annotations

import json

import pytest
from conftest import english_wer

from bot.cli import main
from bot.eval.report import summary_rows, terminal_table

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
    assert results["schema"] == "captionbot.eval/1"
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
    assert "| config | system |" in markdown and "## WER by language" in markdown
    for config in results["configs"].values():
        assert len(config["model_sha256"]) == 64
        assert config["config"]["engine"]["model"] == "tiny.en"
    assert results["packages"]["ctranslate2"] and results["machine"]["cpus"] >= 1
    assert results["date"]


def test_summary_rows_are_what_the_report_writes(report):
    assert all(isinstance(row["items"], int) for row in report[2]["summary"])
    assert summary_rows([]) == []


def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    code = main(["eval", str(tmp_path / "nothing.jsonl"), "--out", str(tmp_path / "r")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "nothing.jsonl" in error and "\n" not in error
    assert "Traceback" not in error
