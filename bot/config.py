"""The configuration tree: one typed model, loaded from YAML, overridden by CLI flags.

Every key is documented once, in config.example.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from faster_whisper.tokenizer import _LANGUAGE_CODES
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError
from bot.streaming.options import StreamingOptions


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Section):
    name: Literal["auto", "ctranslate2", "jax"] = "auto"
    model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0)
    beam_size: int = Field(1, ge=1, le=10)
    audio_context: Literal["trimmed", "full"] = "trimmed"


_DEFAULT = StreamingOptions()


class StreamingConfig(_Section):
    min_step_s: float = Field(_DEFAULT.min_step_s, gt=0, le=10)
    trim_after_s: float = Field(_DEFAULT.trim_after_s, gt=0, le=28)
    max_buffer_s: float = Field(_DEFAULT.max_buffer_s, gt=2, le=28)
    pause_s: float = Field(_DEFAULT.pause_s, gt=0, le=10)
    vad: bool = _DEFAULT.vad
    vad_threshold: float = Field(_DEFAULT.vad_threshold, gt=0, lt=1)
    prompt_chars: int = Field(_DEFAULT.prompt_chars, ge=0, le=1000)
    max_batch: int = Field(_DEFAULT.max_batch, ge=1, le=64)
    preroll_s: float = Field(_DEFAULT.preroll_s, ge=0, le=2)

    def options(self) -> StreamingOptions:
        return StreamingOptions(**self.model_dump())


class AudioConfig(_Section):
    """Where the meeting audio comes from (the capture process)."""

    source: Literal["loopback", "microphone", "file", "stdin", "sample"] = "loopback"
    device: str | int | None = None
    file: str | None = None
    stdin_format: Literal["s16le", "f32le"] = "s16le"
    stdin_rate: int = Field(16000, ge=8000, le=192000)
    chunk_s: float = Field(0.1, ge=0.02, le=1.0)
    stream_id: str = Field("meeting", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    queue_s: float = Field(30.0, ge=1, le=600)
    reopen_backoff_s: float = Field(1.0, gt=0, le=60)


class VideoConfig(_Section):
    """The picture the captions are drawn on (the compositor process)."""

    source: Literal["background", "screen", "camera", "file"] = "background"
    width: int = Field(1280, ge=160, le=7680)
    height: int = Field(720, ge=120, le=4320)
    fps: float = Field(30.0, gt=0, le=120)
    background: str = "#1e2430"
    display: str | None = None
    region: tuple[int, int, int, int] | None = None
    camera: str = "/dev/video0"
    file: str | None = None
    loop: bool = True


class CaptionStyle(_Section):
    """How captions are drawn on the video."""

    lines: int = Field(2, ge=1, le=10)
    position: Literal["bottom", "top"] = "bottom"
    font: str | None = None
    font_size: int = Field(36, ge=8, le=200)
    color: str = "#ffffff"
    tentative_color: str = "#a0a0a0"
    box_color: str = "#000000"
    box_opacity: float = Field(0.6, ge=0, le=1)
    margin: int = Field(24, ge=0, le=1000)
    max_width: float = Field(0.9, gt=0.1, le=1.0)


class SinksConfig(_Section):
    """Where the captioned video goes."""

    virtual_camera: bool = False
    virtual_camera_device: str | None = None
    virtual_camera_backend: str | None = None
    stream_url: str | None = None
    file: str | None = None
    preview: bool = False


class OverlayConfig(_Section):
    """The local web server for the OBS browser source and the live transcript page."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    token: str | None = None


class OutputsConfig(_Section):
    """Caption files and closed-caption APIs fed with committed text."""

    dir: str = "captions-out"
    formats: tuple[Literal["json", "srt", "vtt", "txt"], ...] = ("json", "srt", "vtt", "txt")
    zoom_cc_url: str | None = None
    youtube_cc_url: str | None = None
    cc_language: str = "en-US"


class Config(_Section):
    task: Literal["transcribe", "translate"] = "translate"
    language: str = "auto"
    engine: EngineConfig = EngineConfig()
    streaming: StreamingConfig = StreamingConfig()
    audio: AudioConfig = AudioConfig()
    video: VideoConfig = VideoConfig()
    captions: CaptionStyle = CaptionStyle()
    sinks: SinksConfig = SinksConfig()
    overlay: OverlayConfig = OverlayConfig()
    outputs: OutputsConfig = OutputsConfig()

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value != "auto" and value not in _LANGUAGE_CODES:
            raise ValueError(f"unknown language '{value}': use auto or a Whisper code like en, de")
        return value

    @property
    def language_or_none(self) -> str | None:
        return None if self.language == "auto" else self.language


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML file (or defaults) and apply dotted-key overrides such as `engine.model`."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section = data
        *parents, key = dotted.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise ConfigError(f"config key '{parent}' must be a mapping")
        section[key] = value
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}"
        )
    return data


def _describe(error: ValidationError, path: Path | None) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    where = f" in {path}" if path else ""
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}'{where}: see config.example.yaml for the keys"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid config key '{key}'{where}: {message} (got {first.get('input')!r})"
