"""Decoding audio files to mono float32 at 16 kHz, with one-line errors for bad inputs."""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bot.audio.decode import audio_duration, load_audio, wav_truncation
from bot.audio.samples import BUNDLED_SAMPLE_TEXT, bundled_sample
from bot.errors import AudioInputError

soundfile = pytest.importorskip("soundfile")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SR = 16_000


@pytest.fixture(scope="module")
def jfk_item() -> dict[str, object]:
    manifest = DATA_DIR / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"evaluation data not found at {DATA_DIR} (expected ../shared/data)")
    for line in manifest.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["id"] == "fw_jfk":
            return item
    pytest.skip(f"fw_jfk is not in {manifest}")


@pytest.fixture(scope="module")
def jfk_path(jfk_item: dict[str, object]) -> Path:
    return DATA_DIR / str(jfk_item["audio"])


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    times = np.arange(round(len(samples) * rate_out / rate_in)) / rate_out
    return np.interp(times, np.arange(len(samples)) / rate_in, samples)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


# ---- real speech, other rates and layouts --------------------------------------------------------


def test_speech_wav_loads_as_mono_float32_at_16khz(
    jfk_path: Path, jfk_item: dict[str, object]
) -> None:
    audio = load_audio(jfk_path)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == round(float(jfk_item["duration_s"]) * SR)
    assert 0.1 < np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    ("rate", "channels", "suffix"),
    [(44_100, 2, ".wav"), (48_000, 1, ".flac"), (8_000, 1, ".wav"), (22_050, 2, ".ogg")],
)
def test_other_rates_and_channel_layouts_become_mono_16khz(
    jfk_path: Path, tmp_path: Path, rate: int, channels: int, suffix: str
) -> None:
    speech, _ = soundfile.read(jfk_path, dtype="float32")
    resampled = _resample(speech, SR, rate)
    if channels == 2:
        resampled = np.stack([resampled, 0.5 * resampled], axis=1)
    converted = tmp_path / f"speech_{rate}_{channels}ch{suffix}"
    soundfile.write(converted, resampled, rate)

    audio = load_audio(converted)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(speech)) <= SR // 50  # codec padding at most 20 ms
    min_correlation = 0.5 if rate == 8_000 else 0.9  # 8 kHz loses everything above 4 kHz
    assert _correlation(audio, speech) > min_correlation


def test_truncated_wav_decodes_what_is_present_and_warns(
    jfk_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = jfk_path.read_bytes()
    truncated = tmp_path / "cut_short.wav"
    truncated.write_bytes(data[: len(data) // 2])

    with caplog.at_level(logging.WARNING, logger="bot.audio.decode"):
        audio = load_audio(truncated)

    assert abs(len(audio) - len(load_audio(jfk_path)) // 2) <= SR // 100
    assert "cut_short.wav is truncated" in caplog.text
    # the header's 11 s against the 5.5 s that are there
    assert "declares 11.00 s of audio, the file holds 5.50 s" in caplog.text


def test_truncation_is_read_from_the_header_and_the_file_size(
    jfk_path: Path, tmp_path: Path
) -> None:
    data = jfk_path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 4])

    truncation = wav_truncation(cut)

    assert wav_truncation(jfk_path) is None
    assert truncation is not None
    assert truncation.declared_s == pytest.approx(11.0, abs=0.01)
    assert truncation.present_s == pytest.approx(2.75, abs=0.01)


def _wav_header(data_bytes: int, rate: int = SR) -> bytes:
    """A 16-bit mono PCM WAV header that declares `data_bytes` of samples."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def test_a_header_claiming_100_mb_over_200_bytes_is_an_error_not_an_empty_success(
    tmp_path: Path,
) -> None:
    path = tmp_path / "claims_a_lot.wav"
    header = _wav_header(100_000_000)
    path.write_bytes(header + np.full(200 - len(header), 7, np.uint8).tobytes())

    with pytest.raises(AudioInputError) as error:
        load_audio(path)

    message = str(error.value)
    assert path.stat().st_size == 200
    assert "\n" not in message and "claims_a_lot.wav is truncated" in message
    assert "declares 3125.00 s" in message and "holds 0.005 s" in message
    assert "nothing to caption" in message


def test_audio_duration_reads_the_header(jfk_path: Path, jfk_item: dict[str, object]) -> None:
    assert audio_duration(jfk_path) == pytest.approx(float(jfk_item["duration_s"]), abs=0.01)


# ---- bad inputs: one line naming the file --------------------------------------------------------


def _png(path: Path) -> None:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _header_only_wav(path: Path, source: Path) -> None:
    path.write_bytes(source.read_bytes()[:44])


BAD_INPUTS: dict[str, tuple[str, Callable[[Path, Path], None], str]] = {
    "missing": ("missing.wav", lambda p, s: None, "does not exist"),
    "directory": ("a_folder.wav", lambda p, s: p.mkdir(), "is a directory"),
    "empty": ("empty.wav", lambda p, s: p.write_bytes(b""), "empty (0 bytes)"),
    "text": ("notes.wav", lambda p, s: p.write_text("hello\n" * 50), "not a readable audio"),
    "random bytes": ("noise.mp3", lambda p, s: p.write_bytes(bytes(range(256)) * 40), "not a"),
    "image": ("picture.png", lambda p, s: _png(p), "has no audio stream"),
    "header only": ("header_only.wav", _header_only_wav, "truncated or corrupt WAV"),
    "zero samples": (
        "silent_nothing.wav",
        lambda p, s: soundfile.write(p, np.zeros(0, np.float32), SR, subtype="PCM_16"),
        "contains no audio samples",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_one_line_audio_input_error_naming_the_file(
    case: str, tmp_path: Path, jfk_path: Path
) -> None:
    file_name, make, expected = BAD_INPUTS[case]
    path = tmp_path / file_name
    make(path, jfk_path)

    with pytest.raises(AudioInputError) as error:
        load_audio(path)

    message = str(error.value)
    assert "\n" not in message
    assert file_name in message
    assert expected in message


def test_audio_duration_of_a_non_audio_file_is_an_audio_input_error(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    _png(path)

    with pytest.raises(AudioInputError, match="picture.png has no audio stream"):
        audio_duration(path)


# ---- the bundled sample --------------------------------------------------------------------------


def test_bundled_sample_is_small_and_loads_as_eleven_seconds_of_speech() -> None:
    sample = bundled_sample()

    assert sample.is_file() and sample.stat().st_size < 1_000_000
    audio = load_audio(sample)
    assert len(audio) == 11 * SR
    assert np.abs(audio).max() > 0.1


def test_bundled_sample_text_matches_the_evaluation_reference(
    jfk_item: dict[str, object], jfk_path: Path
) -> None:
    assert jfk_item["text"] == BUNDLED_SAMPLE_TEXT
    assert bundled_sample().read_bytes() == jfk_path.read_bytes()
