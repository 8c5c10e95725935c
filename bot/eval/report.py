"""Eval reports: the terminal table, report.md, report.html (SVG plots) and results.json.

results.json (schema `captionbot.eval/2`) holds one row per item per configuration (the
`ItemMetrics.as_row` keys plus `config` and `system`: "streaming" or "offline"), a summary
row per configuration and system (`summary`, the same numbers as the terminal table) and per
configuration, system and language (`by_language`), and what is needed to reproduce the run:
versions, model checksums, configurations, machine and date. Version 2: WER/CER are null
where the output is a translation, BLEU/chrF are corpus scores over translated items only, and
the written-form and streaming-artefact columns are new.
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
from bot.eval.metrics import ItemMetrics, SpeedStats, corpus_translation_scores, pool
from bot.eval.runner import ConfigRun
from bot.eval.svg import bar_chart, cdf, line_chart
from bot.outputs.transcript import Transcript
from bot.outputs.writers import json_safe, write_text_atomic

SCHEMA = "captionbot.eval/2"
_QUALITY = (
    ("wer", "WER %"),
    ("cer", "CER %"),
    ("bleu", "BLEU"),
    ("chrf", "chrF"),
    ("pc_wer", "PC-WER %"),
    ("pc_wer_vs_offline", "PC vs offl %"),
    ("loops", "loops"),
    ("tentative_repeat_share", "tent rep %"),
    ("mid_sentence_breaks", "mid breaks"),
)
COLUMNS = (
    ("config", "config"),
    ("system", "system"),
    ("items", "items"),
    *_QUALITY,
    ("commit_p50_s", "commit p50"),
    ("commit_p90_s", "p90"),
    ("commit_max_s", "max"),
    ("first_seen_p50_s", "seen p50"),
    ("revisions_per_word", "flicker/word"),
    ("rtf", "RTF"),
    ("cpu_per_audio_s", "CPU/audio s"),
    ("peak_rss_mb", "peak RSS MB"),
)
LANGUAGE_COLUMNS = (
    ("config", "config"),
    ("system", "system"),
    ("language", "language"),
    ("items", "items"),
    *_QUALITY,
    ("commit_p50_s", "commit p50"),
    ("revisions_per_word", "flicker/word"),
)
PERCENT = {"wer", "cer", "pc_wer", "pc_wer_vs_offline", "tentative_repeat_share"}
LEGEND = (
    "WER/CER: normalized (Whisper's English normalizer for English, the basic one otherwise), "
    "pooled over the items whose output is in the reference's language; BLEU/chrF: corpus "
    "scores over the translated items with a reference translation; PC-WER: case and "
    "punctuation count, against references written that way; PC vs offl: the same against "
    "the offline transcript of the model; loops: n-grams repeated back to back; tent rep: "
    "tentative tails that repeat the last committed words; mid breaks: a sentence end "
    "followed by a lower-case word; latency in seconds after the word ended; RTF = decoding "
    "seconds per audio second."
)


def summary_rows(runs: list[ConfigRun]) -> list[dict[str, Any]]:
    """One row per configuration and system (streaming, then offline), over all items."""
    rows = []
    for run in runs:
        rows.append(
            _summary(run.named.name, "streaming", run.items, run.speed, run.transcripts)
            | {"failed_items": len(run.failures)}
        )
        if run.offline:
            offline_items = [o.metrics for o in run.offline]
            rows.append(_summary(run.named.name, "offline", offline_items, run.offline_speed))
    return rows


def language_rows(runs: list[ConfigRun]) -> list[dict[str, Any]]:
    """The summary per configuration, system and language of the speech."""
    rows = []
    for run in runs:
        systems: list[tuple[str, list[ItemMetrics], dict[str, Transcript] | None]] = [
            ("streaming", run.items, run.transcripts)
        ]
        if run.offline:
            systems.append(("offline", [o.metrics for o in run.offline], None))
        for system, items, transcripts in systems:
            for language, group in _by_language(items).items():
                ids = {i.id for i in group}
                subset = {k: v for k, v in transcripts.items() if k in ids} if transcripts else None
                row = _summary(run.named.name, system, group, None, subset)
                rows.append(
                    {"config": row["config"], "system": system, "language": language, **row}
                )
    return rows


def _summary(
    name: str,
    system: str,
    items: list[ItemMetrics],
    speed: SpeedStats | None,
    transcripts: dict[str, Transcript] | None = None,
) -> dict[str, Any]:
    """Pooled scores of `items`; latency needs the streamed `transcripts`."""
    words = [i.words for i in items if i.words]
    chars = [i.chars for i in items if i.chars]
    written = [i.written for i in items if i.written]
    vs_offline = [i.written_vs_offline for i in items if i.written_vs_offline]
    translated = [i.translated for i in items if i.translated]
    scores = corpus_translation_scores(translated)
    quality = [i.quality for i in items if i.quality]
    repeats = [i.repeats for i in items if i.repeats]
    tentative = sum(r.tentative_states for r in repeats)
    row: dict[str, Any] = {
        "config": name,
        "system": system,
        "items": len(items),
        "wer_items": len(words),
        "wer": pool(words).wer if words else None,
        "cer": pool(chars).cer if chars else None,
        "translated_items": len(translated),
        "bleu": scores.bleu if scores else None,
        "chrf": scores.chrf if scores else None,
        "pc_wer_items": len(written),
        "pc_wer": pool(written).wer if written else None,
        "pc_wer_vs_offline": pool(vs_offline).wer if vs_offline else None,
        "loops": sum(q.loops.loops for q in quality) if quality else None,
        "loop_repeated_words": sum(q.loops.repeated_words for q in quality) if quality else None,
        "hypothesis_words": sum(q.loops.words for q in quality) if quality else None,
        "mid_sentence_breaks": sum(q.mid_sentence_breaks for q in quality) if quality else None,
        "tentative_repeat_share": (
            sum(r.repeating for r in repeats) / tentative if tentative else None
        ),
        "revisions_per_word": None,
        "rtf": speed.rtf if speed else None,
        "cpu_per_audio_s": speed.cpu_per_audio_s if speed else None,
        "peak_rss_mb": speed.peak_rss_mb if speed else None,
        "streams": speed.streams if speed else None,
    }
    if transcripts is not None:
        word_lists = [t.words for t in transcripts.values()]
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
            }
        )
    return json_safe(row)


def terminal_table(
    rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> str:
    header = [title for _, title in columns]
    body = [[_cell(row.get(key), key) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    return "\n".join(lines)


def markdown_table(
    rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> str:
    header = [title for _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), key) for key, _ in columns) + " |")
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
    by_language = language_rows(runs)
    item_rows = []
    for run in runs:
        for metrics in run.items:
            item_rows.append({"config": run.named.name, "system": "streaming", **metrics.as_row()})
        for offline in run.offline:
            item_rows.append(
                {"config": run.named.name, "system": "offline", **offline.metrics.as_row()}
            )
    info = provenance(runs, dataset, settings)
    results = {
        "schema": SCHEMA,
        **info,
        "summary": summary,
        "by_language": by_language,
        "rows": item_rows,
    }
    paths = {
        "json": out_dir / "results.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    write_text_atomic(paths["json"], json.dumps(results, indent=1, allow_nan=False) + "\n")
    write_text_atomic(paths["md"], _markdown(summary, by_language, runs, info))
    write_text_atomic(paths["html"], _html(summary, by_language, runs, info))
    return paths


def _offline_references(runs: list[ConfigRun]) -> list[str]:
    """How each configuration's offline line was decoded (it differs per engine)."""
    lines = [
        f"Offline reference of {run.named.name}: {run.engine.details['offline_reference']}."
        for run in runs
        if run.offline and run.engine.details.get("offline_reference")
    ]
    return [*lines, ""] if lines else []


def _markdown(
    summary: list[dict], by_language: list[dict], runs: list[ConfigRun], info: dict
) -> str:
    lines = [
        f"# captionbot eval: {info['dataset']['name']}",
        "",
        f"{info['date']}, {info['machine']['processor']} ({info['machine']['cpus']} CPUs), "
        f"mode {info['settings'].get('mode')}, streams {info['settings'].get('streams')}. "
        + LEGEND,
        "",
        markdown_table(summary),
        "",
        *_offline_references(runs),
        "## By language",
        "",
        markdown_table(by_language, LANGUAGE_COLUMNS),
        "",
        "## Items",
        "",
        "| config | system | item | WER % | BLEU | chrF | PC-WER % | loops | mid breaks "
        "| commit p50 | flicker/word |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        systems = [("streaming", run.items), ("offline", [o.metrics for o in run.offline])]
        for system, items in systems:
            for item in items:
                row = item.as_row()
                cells = [
                    _cell(row[key], key)
                    for key in ("wer", "bleu", "chrf", "pc_wer", "loops", "mid_sentence_breaks")
                ]
                latency = (
                    [
                        _cell(row["commit_latency_p50_s"], "p50"),
                        _cell(row["revisions_per_word"], "x"),
                    ]
                    if system == "streaming"
                    else ["-", "-"]
                )
                lines.append(
                    f"| {run.named.name} | {system} | {item.id} | "
                    + " | ".join(cells + latency)
                    + " |"
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


def _html_table(rows: list[dict], columns: tuple[tuple[str, str], ...]) -> str:
    table = "<table><tr>" + "".join(f"<th>{escape(t)}</th>" for _, t in columns) + "</tr>"
    for row in rows:
        cells = "".join(f"<td>{escape(_cell(row.get(k), k))}</td>" for k, _ in columns)
        table += f"<tr>{cells}</tr>"
    return table + "</table>"


def _html(summary: list[dict], by_language: list[dict], runs: list[ConfigRun], info: dict) -> str:
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
    scored = [i for i in runs[0].items if i.words] if runs else []
    wer_items = bar_chart(
        "WER per item (first config)",
        "WER %",
        [(i.id, 100 * i.words.wer) for i in scored[:24] if i.words],
    )
    streamed = [r for r in by_language if r["system"] == "streaming"]
    wer_language = bar_chart(
        "WER per language (streaming)",
        "WER %",
        [(f"{r['config']}:{r['language']}", 100 * r["wer"]) for r in streamed if r["wer"]],
    )
    bleu_language = bar_chart(
        "BLEU per language (streaming translation)",
        "BLEU",
        [(f"{r['config']}:{r['language']}", r["bleu"]) for r in streamed if r["bleu"] is not None],
    )
    speed = bar_chart(
        "Real-time factor (decoding s per audio s)",
        "RTF",
        [(f"{r['config']} {r['system']}", r.get("rtf") or 0.0) for r in summary],
    )
    table = _html_table(summary, COLUMNS)
    languages = _html_table(by_language, LANGUAGE_COLUMNS)
    charts = "".join(
        f"<figure>{chart}</figure>"
        for chart in (latency_cdf, over_time, wer_items, wer_language, bleu_language, speed)
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
        f"mode {escape(str(info['settings'].get('mode')))}. {escape(LEGEND)}</p>"
        f"{table}<h2>By language</h2>{languages}{charts}"
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
