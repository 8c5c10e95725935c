"""Decode an audio file (anything FFmpeg reads) to mono float32 at 16 kHz.

Every failure becomes an `AudioInputError` with one line naming the file and what to do.
A WAV file cut short (its header declares more audio than the file holds: a recording that
stopped mid-write) is accepted with a warning naming both durations, and the part that is
present is decoded; when almost nothing is present it is an error.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from bot.errors import AudioInputError
from bot.messages import SAMPLE_RATE

logger = logging.getLogger(__name__)

CONVERT_HINT = "convert it with e.g. ffmpeg -i INPUT -ac 1 -ar 16000 out.wav"
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)  # written by streaming encoders that cannot seek back
# Less audio than one capture chunk cannot hold a word: a truncated file with less is a failure.
MIN_TRUNCATED_S = 0.1


@dataclass(frozen=True)
class Truncation:
    """A WAV file whose header promises more audio than the file holds (seconds)."""

    declared_s: float
    present_s: float

    def describe(self) -> str:
        present = f"{self.present_s:.2f}" if self.present_s >= 0.1 else f"{self.present_s:.3f}"
        return f"its header declares {self.declared_s:.2f} s of audio, the file holds {present} s"


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to a mono float32 array at `sample_rate`, downmixing and resampling."""
    from faster_whisper.audio import decode_audio  # heavy import, only when decoding

    file = _readable_file(path)
    _require_audio_stream(file)
    try:
        audio = decode_audio(str(file), sampling_rate=sample_rate)
    except (av.FFmpegError, OSError) as exc:
        raise _decode_error(file, exc) from exc
    truncation = wav_truncation(file)
    if truncation is not None and audio.size < MIN_TRUNCATED_S * sample_rate:
        raise AudioInputError(
            f"{file} is truncated: {truncation.describe()}, nothing to caption; "
            "record or export it again"
        )
    if audio.size == 0:
        raise AudioInputError(f"{file} contains no audio samples; pass a recording with sound")
    if truncation is not None:
        logger.warning("%s is truncated: %s; captioning what is there", file, truncation.describe())
    return np.ascontiguousarray(audio, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the container header, decoding only when the header has none."""
    file = _readable_file(path)
    with _open(file) as container:
        stream = _first_audio_stream(file, container)
        if container.duration is not None:
            return container.duration / av.time_base
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
    return load_audio(file).size / SAMPLE_RATE


def _readable_file(path: str | Path) -> Path:
    file = Path(path).expanduser()
    try:
        size = file.stat().st_size
    except FileNotFoundError as exc:
        raise AudioInputError(f"audio file {file} does not exist; check the path") from exc
    except OSError as exc:
        raise AudioInputError(
            f"cannot access audio file {file} ({exc.strerror}); check the path and permissions"
        ) from exc
    if file.is_dir():
        raise AudioInputError(f"audio path {file} is a directory; pass an audio file")
    if size == 0 and file.is_file():
        raise AudioInputError(f"audio file {file} is empty (0 bytes); record or export it again")
    return file


def _require_audio_stream(file: Path) -> None:
    with _open(file) as container:
        _first_audio_stream(file, container)


def _open(file: Path) -> av.container.InputContainer:
    try:
        return av.open(str(file), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise _decode_error(file, exc) from exc


def _first_audio_stream(file: Path, container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        kinds = sorted({stream.type for stream in container.streams}) or ["nothing decodable"]
        raise AudioInputError(
            f"{file} has no audio stream (it holds {', '.join(kinds)}); pass a file with sound"
        )
    return container.streams.audio[0]


def _decode_error(file: Path, exc: BaseException) -> AudioInputError:
    reason = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    reason = reason.splitlines()[0]
    if _starts_with(file, b"RIFF"):
        return AudioInputError(
            f"{file} is a truncated or corrupt WAV file ({reason}); export it again or "
            f"{CONVERT_HINT}"
        )
    return AudioInputError(f"{file} is not a readable audio file ({reason}); {CONVERT_HINT}")


def _starts_with(file: Path, magic: bytes) -> bool:
    try:
        with file.open("rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


def wav_truncation(path: str | Path) -> Truncation | None:
    """The declared and present durations when a RIFF/WAVE header promises more data than the
    file has; None for a whole WAV file, a streamed one (unknown size) or any other format."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            byte_rate = 0
            while header := handle.read(8):
                if len(header) < 8:
                    return None
                chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"fmt ":
                    fmt = handle.read(chunk_size + (chunk_size & 1))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                elif chunk_id == b"data":
                    present = file.stat().st_size - handle.tell()
                    if chunk_size in _UNKNOWN_WAV_SIZES or chunk_size <= present or not byte_rate:
                        return None
                    return Truncation(chunk_size / byte_rate, present / byte_rate)
                else:
                    handle.seek(chunk_size + (chunk_size & 1), 1)
    except OSError:
        return None
    return None
