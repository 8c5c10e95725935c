"""Eval reports: the terminal table, report.md, report.html (SVG plots) and results.json.

results.json (schema `captionbot.eval/1`) holds one row per item per configuration (the
`ItemMetrics.as_row` keys plus `config` and `system`: "streaming" or "offline"), a summary
row per configuration and system (the same numbers as the terminal table), and what is
needed to reproduce the run: versions, model checksums, configurations, machine and date.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.asr.models import model_checksum, resolve_model
from bot.eval.datasets import Dataset
from bot.eval.latency import commit_latencies, first_seen_latencies, pooled_latency
from bot.eval.metrics import ItemMetrics, SpeedStats, pool
from bot.eval.runner import ConfigRun
from bot.eval.svg import bar_chart, cdf, line_chart
from bot.outputs.writers import json_safe, write_text_atomic

SCHEMA = "captionbot.eval/1"
COLUMNS = (
    ("config", "config"),
    ("system", "system"),
    ("items", "items"),
    ("wer", "WER %"),
    ("cer", "CER %"),
    ("bleu", "BLEU"),
    ("commit_p50_s", "commit p50"),
    ("commit_p90_s", "p90"),
    ("commit_max_s", "max"),
    ("first_seen_p50_s", "seen p50"),
    ("revisions_per_word", "flicker/word"),
    ("rtf", "RTF"),
    ("cpu_per_audio_s", "CPU/audio s"),
    ("peak_rss_mb", "peak RSS MB"),
)
PERCENT = {"wer", "cer"}


def summary_rows(runs: list[ConfigRun]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        rows.append(_summary(run.named.name, "streaming", run.items, run.speed, run))
        if run.offline:
            offline_items = [o.metrics for o in run.offline]
            rows.append(_summary(run.named.name, "offline", offline_items, run.offline_speed))
    return rows


def _summary(
    name: str,
    system: str,
    items: list[ItemMetrics],
    speed: SpeedStats | None,
    run: ConfigRun | None = None,
) -> dict[str, Any]:
    words = pool(i.words for i in items) if items else None
    chars = pool(i.chars for i in items) if items else None
    bleu = [i.translation.bleu for i in items if i.translation]
    row: dict[str, Any] = {
        "config": name,
        "system": system,
        "items": len(items),
        "wer": words.wer if words else None,
        "cer": chars.cer if chars else None,
        "bleu": sum(bleu) / len(bleu) if bleu else None,
        "revisions_per_word": None,
        "rtf": speed.rtf if speed else None,
        "cpu_per_audio_s": speed.cpu_per_audio_s if speed else None,
        "peak_rss_mb": speed.peak_rss_mb if speed else None,
        "streams": speed.streams if speed else None,
    }
    if run is not None:
        word_lists = [t.words for t in run.transcripts.values()]
        commit = pooled_latency(word_lists, commit_latencies)
        seen = pooled_latency(word_lists, first_seen_latencies)
        revisions = sum(i.flicker.revisions for i in items)
        final_words = sum(i.flicker.final_words for i in items)
        row.update(
            {
                "commit_p50_s": commit.p50,
                "commit_p90_s": commit.p90,
                "commit_p99_s": commit.p99,
                "commit_max_s": commit.max,
                "first_seen_p50_s": seen.p50,
                "first_seen_p90_s": seen.p90,
                "revisions_per_word": revisions / final_words if final_words else None,
                "failed_items": len(run.failures),
            }
        )
    return json_safe(row)


def terminal_table(rows: list[dict[str, Any]]) -> str:
    header = [title for _, title in COLUMNS]
    body = [[_cell(row.get(key), key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), key) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def provenance(runs: list[ConfigRun], dataset: Dataset, settings: dict[str, Any]) -> dict:
    packages = {}
    for name in ("captionbot", "faster-whisper", "ctranslate2", "numpy", "onnxruntime", "jiwer"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    configs = {}
    for run in runs:
        try:
            checksum = model_checksum(resolve_model(run.named.config.engine.model))
        except Exception as error:  # noqa: BLE001 - provenance must not end the report
            checksum = f"unavailable: {error}"
        configs[run.named.name] = {
            "source": run.named.source,
            "config": run.named.config.model_dump(),
            "engine": {
                "name": run.engine.name,
                "model": run.engine.model,
                "device": run.engine.device,
                "compute_type": run.engine.compute_type,
                **run.engine.details,
            },
            "model_sha256": checksum,
        }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "packages": packages,
        "dataset": {
            "name": dataset.name,
            "format": dataset.format,
            "items": len(dataset.items),
            "skipped": [{"source": s.source, "reason": s.reason} for s in dataset.skipped],
        },
        "settings": settings,
        "configs": configs,
    }


def write_report(
    out_dir: Path, runs: list[ConfigRun], dataset: Dataset, settings: dict[str, Any]
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_rows(runs)
    item_rows = []
    for run in runs:
        for metrics in run.items:
            item_rows.append({"config": run.named.name, "system": "streaming", **metrics.as_row()})
        for offline in run.offline:
            item_rows.append(
                {"config": run.named.name, "system": "offline", **offline.metrics.as_row()}
            )
    info = provenance(runs, dataset, settings)
    results = {"schema": SCHEMA, **info, "summary": summary, "rows": item_rows}
    paths = {
        "json": out_dir / "results.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    write_text_atomic(paths["json"], json.dumps(results, indent=1, allow_nan=False) + "\n")
    write_text_atomic(paths["md"], _markdown(summary, runs, info))
    write_text_atomic(paths["html"], _html(summary, runs, info))
    return paths


def _markdown(summary: list[dict], runs: list[ConfigRun], info: dict) -> str:
    lines = [
        f"# captionbot eval: {info['dataset']['name']}",
        "",
        f"{info['date']}, {info['machine']['processor']} ({info['machine']['cpus']} CPUs), "
        f"mode {info['settings'].get('mode')}, streams {info['settings'].get('streams')}. "
        "WER/CER pooled over items (normalized: Whisper's English normalizer for English, the "
        "basic one otherwise); latency in seconds after the word ended; RTF = decoding seconds "
        "per audio second.",
        "",
        markdown_table(summary),
        "",
        "## WER by language",
        "",
        "| config | language | items | WER % |",
        "|---|---|---|---|",
    ]
    for run in runs:
        for language, items in _by_language(run.items).items():
            wer = pool(i.words for i in items).wer
            lines.append(f"| {run.named.name} | {language} | {len(items)} | {100 * wer:.2f} |")
    lines += ["", "## Items", "", "| config | item | WER % | commit p50 | flicker/word |"]
    lines.append("|---|---|---|---|---|")
    for run in runs:
        for item in run.items:
            lines.append(
                f"| {run.named.name} | {item.id} | {100 * item.words.wer:.2f} | "
                f"{_cell(item.latency.commit.p50, 'p50')} | "
                f"{_cell(item.flicker.revisions_per_word, 'x')} |"
            )
    skipped = info["dataset"]["skipped"]
    failed = [(run.named.name, k, v) for run in runs for k, v in run.failures.items()]
    if skipped or failed:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- skipped {s['source']}: {s['reason']}" for s in skipped]
        lines += [f"- {name}: {item} failed: {reason}" for name, item, reason in failed]
    lines += ["", "## Reproduce", "", "```json", json.dumps(info["configs"], indent=1), "```", ""]
    lines += [f"Packages: {json.dumps(info['packages'])}", ""]
    return "\n".join(lines)


def _html(summary: list[dict], runs: list[ConfigRun], info: dict) -> str:
    latency_cdf = line_chart(
        "Commit latency CDF",
        "seconds after the word ended",
        "fraction of words",
        [
            (run.named.name, cdf([x for t in run.transcripts.values() for x in _commit(t)]))
            for run in runs
        ],
    )
    over_time = line_chart(
        "Commit latency over time (median per minute)",
        "minute of audio",
        "seconds",
        [(run.named.name, _per_minute(run)) for run in runs],
    )
    wer_items = bar_chart(
        "WER per item (first config)",
        "WER %",
        [(i.id, 100 * i.words.wer) for i in runs[0].items[:24]] if runs else [],
    )
    wer_language = bar_chart(
        "WER per language",
        "WER %",
        [
            (f"{run.named.name}:{language}", 100 * pool(i.words for i in items).wer)
            for run in runs
            for language, items in _by_language(run.items).items()
        ],
    )
    speed = bar_chart(
        "Real-time factor (decoding s per audio s)",
        "RTF",
        [(f"{r['config']} {r['system']}", r.get("rtf") or 0.0) for r in summary],
    )
    table = "<table><tr>" + "".join(f"<th>{escape(t)}</th>" for _, t in COLUMNS) + "</tr>"
    for row in summary:
        cells = "".join(f"<td>{escape(_cell(row.get(k), k))}</td>" for k, _ in COLUMNS)
        table += f"<tr>{cells}</tr>"
    table += "</table>"
    charts = "".join(
        f"<figure>{chart}</figure>"
        for chart in (latency_cdf, over_time, wer_items, wer_language, speed)
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f4f4f4}figure{display:inline-block;margin:1em 0}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>captionbot eval: {escape(info['dataset']['name'])}</title>"
        f"<style>{style}</style></head><body>"
        f"<h1>captionbot eval: {escape(info['dataset']['name'])}</h1>"
        f"<p>{escape(info['date'])}, {escape(str(info['machine']['processor']))}, "
        f"mode {escape(str(info['settings'].get('mode')))}. WER pooled over items; latency in "
        "seconds after the word ended.</p>"
        f"{table}{charts}"
        f"<h2>Reproduce</h2><pre>{escape(json.dumps(info['configs'], indent=1))}</pre>"
        "</body></html>\n"
    )


def _commit(transcript) -> list[float]:
    return [float(x) for x in commit_latencies(transcript.words)]


def _per_minute(run: ConfigRun) -> list[tuple[float, float]]:
    """Median commit latency per minute of audio, over every item long enough to have it."""
    by_minute: dict[int, list[float]] = {}
    for item in run.items:
        for start, median, _ in item.latency.commit_per_minute:
            by_minute.setdefault(int(start // 60), []).append(median)
    return [(m, sorted(v)[len(v) // 2]) for m, v in sorted(by_minute.items())]


def _by_language(items: list[ItemMetrics]) -> dict[str, list[ItemMetrics]]:
    groups: dict[str, list[ItemMetrics]] = {}
    for item in items:
        groups.setdefault(item.language or "unknown", []).append(item)
    return groups


def _cell(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if key in PERCENT:
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.2f}" if key != "peak_rss_mb" else f"{value:.0f}"
    return str(value)
