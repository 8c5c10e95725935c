"""Evaluation datasets: any supported layout, loaded as one list of (audio, reference) items.

`load_dataset(path)` detects the layout:

- `jsonl`: a `.jsonl` manifest (one JSON object a line), or a folder holding `manifest.jsonl`;
- `csv`, `tsv`: a `.csv` / `.tsv` table with a header row;
- `kaldi`: a folder with `wav.scp` (`UTT PATH`) and `text` (`UTT TRANSCRIPT`); language unknown;
- `librispeech`: a folder with `<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` files
  (`ID TRANSCRIPT` lines) beside `ID.flac` (or `ID.wav`); language `en`;
- `huggingface`: a folder written by `datasets.Dataset.save_to_disk` (needs `captionbot[eval]`);
  an `Audio` column's embedded bytes are written out unchanged to the cache (no decoding here);
- `audio-folder`: a folder of audio files, each with a same-named `.txt` reference
  (`a.wav` + `a.txt`), searched recursively; the id is the path without suffix; language unknown.

Manifests, tables and Hugging Face datasets name their columns freely: the audio path is one of
`AUDIO_COLUMNS`, the reference one of `TEXT_COLUMNS`; `ID_COLUMNS`, `LANGUAGE_COLUMNS`,
`TRANSLATION_COLUMNS` and `DURATION_COLUMNS` are optional; other columns are ignored. Without
an id column an item's id is its audio file's stem. Relative audio paths are resolved against
the folder of the manifest or table (the dataset folder for the other layouts).

References are kept as written (stripped; a multi-line `.txt` is joined with spaces).
Bad rows never stop a load: a row without a reference, with an empty reference, a duplicated
id (the first one is kept), or (with `check_audio`) a missing or empty audio file becomes a
`SkippedRow` naming where it is and why. Whether the audio decodes is found out when it is used.

Filters, applied in this order: `ids` keeps those items (an id the dataset does not have is a
`ConfigError`); `language` keeps the items in that language, matching case-insensitively and on
the primary subtag (`de` keeps `de`, `de-DE` and `de_de`); items whose language the dataset does
not say (audio folders, Kaldi folders, tables without a language column) are kept and take the
requested language, so `language` is how a single-language corpus says what it is; `limit`
keeps the first N usable items. Rows dropped by a filter are neither checked nor reported.

Why one ~570-line module: seven small loaders behind one `load_dataset`, sharing the row checks
and the bad-row report; each loader is a page or two. Move a loader out if it grows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

logger = logging.getLogger(__name__)

AUDIO_COLUMNS = ("audio", "audio_path", "path", "file", "filename", "file_name", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "reference")
ID_COLUMNS = ("id", "utt_id", "utterance_id")
LANGUAGE_COLUMNS = ("language", "lang", "locale")
TRANSLATION_COLUMNS = ("translation",)
DURATION_COLUMNS = ("duration_s", "duration")
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".mkv", ".wma"}
)
ACCEPTED_FORMATS = (
    "a .jsonl manifest, a .csv/.tsv table, a Kaldi folder (wav.scp + text), a LibriSpeech folder "
    "(*.trans.txt), a Hugging Face save_to_disk folder, or a folder of audio files with "
    "same-named .txt references"
)
INSTALL_HINT = "pip install 'captionbot[eval]'"
_GENERIC_STEMS = frozenset({"manifest", "metadata"})


@dataclass(frozen=True)
class EvalItem:
    """One utterance to caption and score: its audio, the reference and what language it is in."""

    id: str
    audio: Path
    text: str
    language: str | None
    translation: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class SkippedRow:
    """A row that was left out: `source` is `file:line` (or the row's id), `reason` one line."""

    source: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    """The usable items of a dataset, in its order, and the rows that were left out."""

    name: str
    items: tuple[EvalItem, ...]
    skipped: tuple[SkippedRow, ...]
    format: str


def load_dataset(
    path: str | Path,
    *,
    language: str | None = None,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    check_audio: bool = True,
    cache_dir: Path | None = None,
) -> Dataset:
    """Load the dataset at `path` (any format above), filtered by `ids`, `language` and `limit`.

    `check_audio` skips rows whose audio file is missing or empty. `cache_dir` is captionbot's
    cache root (default `bot.asr.models.default_cache_dir()`): audio embedded in a Hugging Face
    dataset is written under `<cache_dir>/eval-audio`, once, named by its content hash.
    """
    path = Path(path).expanduser().absolute()
    _check_filters(limit, ids)
    fmt, source = _detect_format(path)
    rows = list(_read(fmt, source, cache_dir))
    if ids is not None:
        rows = _keep_ids(rows, ids, path)
    if language is not None:
        rows = _keep_language(rows, language, path)
    items, skipped = _validate(rows, check_audio=check_audio, limit=limit)
    dataset = Dataset(_dataset_name(path), tuple(items), tuple(skipped), fmt)
    logger.info("loaded %d items from %s (%s), skipped %d", len(items), path, fmt, len(skipped))
    for row in skipped:
        logger.debug("skipped %s: %s", row.source, row.reason)
    return dataset


# ---- the rows every reader yields ----------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    """A parsed row before checks; `audio` is a path or a function that writes the audio out."""

    source: str
    id: str
    audio: Path | Callable[[], Path]
    text: str | None
    language: str | None = None
    translation: str | None = None
    duration_s: float | None = None


_Parsed = _Row | SkippedRow


@dataclass(frozen=True)
class _Columns:
    """Which column of a manifest, table or Hugging Face dataset holds which field."""

    audio: str
    text: str
    id: str | None
    language: str | None
    translation: str | None
    duration: str | None

    @classmethod
    def find(cls, names: Iterable[str], where: Path, audio: str | None = None) -> _Columns:
        found = [name for name in names if name]
        by_key: dict[str, str] = {}
        for name in found:
            by_key.setdefault(name.strip().lower(), name)

        def pick(candidates: Sequence[str]) -> str | None:
            return next((by_key[c] for c in candidates if c in by_key), None)

        audio = audio or pick(AUDIO_COLUMNS)
        text = pick(TEXT_COLUMNS)
        missing = [
            f"{field} column ({', '.join(accepted)})"
            for field, found, accepted in (
                ("audio", audio, AUDIO_COLUMNS),
                ("text", text, TEXT_COLUMNS),
            )
            if found is None
        ]
        if missing:
            raise ConfigError(
                f"{where}: no {' and no '.join(missing)} among the columns "
                f"{', '.join(found) or '(none)'}; rename them"
            )
        return cls(
            audio,
            text,
            pick(ID_COLUMNS),
            pick(LANGUAGE_COLUMNS),
            pick(TRANSLATION_COLUMNS),
            pick(DURATION_COLUMNS),
        )

    def row(self, record: Mapping[str, Any], base: Path, source: str) -> _Parsed:
        audio = _optional_str(record.get(self.audio))
        if audio is None:
            return SkippedRow(source, f"no audio path in column '{self.audio}'")
        audio_path = _resolve(base, audio)
        return _Row(
            source=source,
            id=(_optional_str(record.get(self.id)) if self.id else None) or audio_path.stem,
            audio=audio_path,
            text=_text(record.get(self.text)),
            language=_optional_str(record.get(self.language)) if self.language else None,
            translation=_optional_str(record.get(self.translation)) if self.translation else None,
            duration_s=_optional_float(record.get(self.duration)) if self.duration else None,
        )


# ---- format detection and readers ----------------------------------------------------------------


def _detect_format(path: Path) -> tuple[str, Path]:
    """The format name and the file or folder its reader takes."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist; pass a dataset: {ACCEPTED_FORMATS}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".csv", ".tsv"):
            return suffix[1:], path
        raise ConfigError(
            f"{path} is not a dataset file (.jsonl, .csv or .tsv); pass {ACCEPTED_FORMATS}"
        )
    if (path / "manifest.jsonl").is_file():
        return "jsonl", path / "manifest.jsonl"
    if (path / "wav.scp").is_file() and (path / "text").is_file():
        return "kaldi", path
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
        raise ConfigError(
            f"{path} holds several Hugging Face splits ({', '.join(splits)}); "
            f"pass one split's folder, e.g. {path / (splits[0] if splits else 'test')}"
        )
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "huggingface", path
    if next(path.rglob("*.trans.txt"), None) is not None:
        return "librispeech", path
    if any(_is_audio(p) for p in path.rglob("*")):
        return "audio-folder", path
    raise ConfigError(f"{path} matches no dataset format; pass {ACCEPTED_FORMATS}")


def _read(fmt: str, source: Path, cache_dir: Path | None) -> Iterator[_Parsed]:
    if fmt == "jsonl":
        return _read_jsonl(source)
    if fmt in ("csv", "tsv"):
        return _read_table(source, delimiter="\t" if fmt == "tsv" else ",")
    if fmt == "kaldi":
        return _read_kaldi(source)
    if fmt == "librispeech":
        return _read_librispeech(source)
    if fmt == "huggingface":
        return _read_huggingface(source, _audio_cache(cache_dir))
    return _read_audio_folder(source)


def _read_jsonl(file: Path) -> Iterator[_Parsed]:
    records: list[tuple[str, dict[str, Any]]] = []
    skipped: list[SkippedRow] = []
    for number, line in enumerate(_read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{file.name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(SkippedRow(source, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            skipped.append(SkippedRow(source, "not a JSON object"))
            continue
        records.append((source, record))
    yield from skipped
    if not records and not skipped:
        raise ConfigError(f"{file} is empty; a manifest has one JSON object a line")
    if not records:
        return
    columns = _Columns.find(dict.fromkeys(k for _, r in records for k in r), file)
    for source, record in records:
        yield columns.row(record, file.parent, source)


def _read_table(file: Path, delimiter: str) -> Iterator[_Parsed]:
    lines = _read_text(file).splitlines(keepends=True)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(lines, delimiter=delimiter, quoting=quoting)
    if reader.fieldnames is None:
        raise ConfigError(f"{file} is empty; a table needs a header row and one row per item")
    columns = _Columns.find(reader.fieldnames, file)
    for record in reader:
        yield columns.row(record, file.parent, f"{file.name}:{reader.line_num}")


def _read_kaldi(folder: Path) -> Iterator[_Parsed]:
    if (folder / "segments").is_file():
        raise ConfigError(
            f"{folder / 'segments'}: Kaldi segments (utterances cut from longer recordings) "
            "are not supported; pass a folder whose wav.scp lists one file per utterance"
        )
    texts = dict(_id_lines(folder / "text"))
    in_scp: set[str] = set()
    for source, utt, rest in _id_lines_with_source(folder / "wav.scp"):
        in_scp.add(utt)
        if rest.endswith("|"):
            yield SkippedRow(source, "piped wav.scp entries are not supported")
        elif not rest:
            yield SkippedRow(source, f"no audio path for {utt}")
        elif utt not in texts:
            yield SkippedRow(source, f"no reference for {utt} in text")
        else:
            yield _Row(source, utt, _resolve(folder, rest), _text(texts[utt]))
    for utt in sorted(texts.keys() - in_scp):
        yield SkippedRow(utt, "in text but not in wav.scp (no audio)")


def _read_librispeech(root: Path) -> Iterator[_Parsed]:
    for transcript in sorted(root.rglob("*.trans.txt")):
        for source, utt, text in _id_lines_with_source(transcript, root):
            flac = transcript.parent / f"{utt}.flac"
            wav = flac.with_suffix(".wav")
            audio = wav if wav.is_file() and not flac.is_file() else flac
            yield _Row(source, utt, audio, _text(text), language="en")


def _read_audio_folder(folder: Path) -> Iterator[_Parsed]:
    for audio in sorted(p for p in folder.rglob("*") if _is_audio(p)):
        relative = audio.relative_to(folder)
        reference = audio.with_suffix(".txt")
        if not reference.is_file():
            yield SkippedRow(relative.as_posix(), f"no reference file {reference.name} beside it")
            continue
        text = " ".join(line.strip() for line in _read_text(reference).splitlines() if line.strip())
        yield _Row(relative.as_posix(), relative.with_suffix("").as_posix(), audio, text)


def _read_huggingface(folder: Path, cache: Path) -> Iterator[_Parsed]:
    try:
        import datasets as hf
        import pyarrow.compute as pc
    except ImportError as exc:
        raise ConfigError(
            f"{folder} is a Hugging Face dataset but the datasets package is not installed "
            f"({exc.name}); install it with {INSTALL_HINT}"
        ) from exc
    try:
        ds = hf.load_from_disk(str(folder))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: cannot load this Hugging Face dataset ({exc})") from exc
    features = ds.features
    audio_feature = next((n for n, f in features.items() if isinstance(f, hf.Audio)), None)
    columns = _Columns.find(ds.column_names, folder, audio=audio_feature)
    arrow = ds.with_format("arrow")
    fields = [columns.text, columns.id, columns.language, columns.translation, columns.duration]
    if audio_feature is None:
        fields.append(columns.audio)
    records = _hf_records(arrow, features, [f for f in fields if f is not None])
    if audio_feature is None:
        for index, record in enumerate(records):
            yield columns.row(record, folder, f"row {index}")
        return
    audio_column = arrow[audio_feature]
    paths = pc.struct_field(audio_column, "path").to_pylist()
    embedded = pc.is_valid(pc.struct_field(audio_column, "bytes")).to_pylist()
    audio_only = ds.select_columns([audio_feature]).cast_column(
        audio_feature, hf.Audio(decode=False)
    )
    for index, (record, stored, has_bytes) in enumerate(zip(records, paths, embedded)):
        source = f"row {index}"
        if has_bytes:
            suffix = Path(stored).suffix if stored else ".wav"
            audio = partial(_extract_audio, audio_only, audio_feature, index, suffix, cache)
        elif stored:
            audio = _resolve(folder, stored)
        else:
            yield SkippedRow(source, f"no audio in column '{audio_feature}'")
            continue
        record[audio_feature] = stored or f"{index}.wav"  # without an id column: its stem
        row = columns.row(record, folder, source)
        yield replace(row, audio=audio) if isinstance(row, _Row) else row


def _hf_records(arrow: Any, features: Mapping[str, Any], names: list[str]) -> list[dict]:
    """The named fields of every row, class labels (integers on disk) as their names."""
    values = {}
    for name in dict.fromkeys(names):
        column = arrow[name].to_pylist()
        feature = features.get(name)
        if hasattr(feature, "int2str"):  # datasets.ClassLabel
            column = [None if v is None else feature.int2str(v) for v in column]
        values[name] = column
    return [dict(zip(values, row)) for row in zip(*values.values())]


def _extract_audio(ds: Any, column: str, index: int, suffix: str, cache: Path) -> Path:
    """Write the encoded audio of row `index` to the cache (named by its hash) and return it."""
    data = ds[index][column]["bytes"]
    target = cache / f"{hashlib.sha1(data).hexdigest()[:20]}{suffix or '.wav'}"
    if target.is_file() and target.stat().st_size == len(data):
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial_file = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial_file.write_bytes(data)
        partial_file.replace(target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write dataset audio to {cache} ({exc.strerror or exc}); "
            "set CAPTIONBOT_CACHE to a writable folder"
        ) from exc
    return target


def _audio_cache(cache_dir: Path | None) -> Path:
    if cache_dir is None:
        from bot.asr.models import default_cache_dir

        cache_dir = default_cache_dir()
    return cache_dir / "eval-audio"


# ---- filters and checks --------------------------------------------------------------------------


def _check_filters(limit: int | None, ids: Sequence[str] | None) -> None:
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be 1 or more, got {limit}")
    if ids is not None and isinstance(ids, str):
        raise ConfigError(f"ids must be a list of item ids, got the string {ids!r}")
    if ids is not None and not ids:
        raise ConfigError("the ids filter is empty; pass at least one item id")


def _keep_ids(rows: list[_Parsed], ids: Sequence[str], path: Path) -> list[_Parsed]:
    wanted = set(ids)
    known = {row.id for row in rows if isinstance(row, _Row)}
    unknown = [i for i in dict.fromkeys(ids) if i not in known]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = ", ".join(unknown[:5]) + more
        raise ConfigError(f"{path} has no item with id {shown}; check the ids against the dataset")
    return [row for row in rows if isinstance(row, SkippedRow) or row.id in wanted]


def _keep_language(rows: list[_Parsed], language: str, path: Path) -> list[_Parsed]:
    kept: list[_Parsed] = []
    matched = False
    for row in rows:
        if isinstance(row, SkippedRow):
            kept.append(row)
        elif row.language is None:
            kept.append(replace(row, language=language))
            matched = True
        elif _same_language(row.language, language):
            kept.append(row)
            matched = True
    if not matched and any(isinstance(row, _Row) for row in rows):
        found = sorted({row.language for row in rows if isinstance(row, _Row) and row.language})
        raise ConfigError(
            f"{path} has no item in language '{language}'; its languages are {', '.join(found)}"
        )
    return kept


def _same_language(language: str, wanted: str) -> bool:
    have = language.strip().lower().replace("_", "-")
    want = wanted.strip().lower().replace("_", "-")
    return have == want or have.split("-")[0] == want


def _validate(
    rows: Iterable[_Parsed], *, check_audio: bool, limit: int | None
) -> tuple[list[EvalItem], list[SkippedRow]]:
    items: list[EvalItem] = []
    skipped: list[SkippedRow] = []
    first_seen: dict[str, str] = {}
    for row in rows:
        if isinstance(row, SkippedRow):
            skipped.append(row)
            continue
        if limit is not None and len(items) >= limit:
            continue
        if row.id in first_seen:
            reason = f"duplicate id {row.id} (first at {first_seen[row.id]})"
            skipped.append(SkippedRow(row.source, reason))
            continue
        first_seen[row.id] = row.source
        if row.text is None:
            skipped.append(SkippedRow(row.source, "no reference"))
            continue
        if not row.text:
            skipped.append(SkippedRow(row.source, "empty reference"))
            continue
        audio = row.audio() if callable(row.audio) else row.audio
        problem = _audio_problem(audio) if check_audio else None
        if problem is not None:
            skipped.append(SkippedRow(row.source, problem))
            continue
        items.append(
            EvalItem(row.id, audio, row.text, row.language, row.translation, row.duration_s)
        )
    return items, skipped


def _audio_problem(audio: Path) -> str | None:
    if not audio.is_file():
        return f"missing audio file {audio}"
    if audio.stat().st_size == 0:
        return f"empty audio file {audio} (0 bytes)"
    return None


# ---- small helpers -------------------------------------------------------------------------------


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {file} ({exc.strerror or exc})") from exc


def _id_lines_with_source(file: Path, root: Path | None = None) -> Iterator[tuple[str, str, str]]:
    """`(file:line, first word, rest of the line)` for every non-blank line of `file`."""
    name = file.relative_to(root).as_posix() if root is not None else file.name
    for number, line in enumerate(_read_text(file).splitlines(), start=1):
        if line.strip():
            key, *rest = line.split(maxsplit=1)
            yield f"{name}:{number}", key, rest[0].strip() if rest else ""


def _id_lines(file: Path) -> Iterator[tuple[str, str]]:
    for _, key, rest in _id_lines_with_source(file):
        yield key, rest


def _resolve(base: Path, audio: str) -> Path:
    path = Path(audio).expanduser()
    return path if path.is_absolute() else base.absolute() / path


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def _text(value: object) -> str | None:
    """A field as written, stripped; `None` when the row has none."""
    return None if value is None else str(value).strip()


def _optional_str(value: object) -> str | None:
    text = _text(value)
    return text or None


def _optional_float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _dataset_name(path: Path) -> str:
    path = path.absolute()
    if path.is_file() and path.stem.lower() in _GENERIC_STEMS:
        return path.parent.name
    return path.stem if path.is_file() else path.name
