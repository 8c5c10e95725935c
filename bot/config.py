"""The configuration tree: one typed model, loaded from YAML, overridden by CLI flags.

Every key is documented once, in config.example.yaml.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError
from bot.languages import LANGUAGE_CODES
from bot.messages import WHISPER_WINDOW_S
from bot.streaming.options import BUFFER_LIMIT_S, StreamingOptions


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Section):
    name: Literal["auto", "ctranslate2", "jax"] = "auto"
    model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    cpu_threads: int = Field(0, ge=0, le=256)
    workers: int = Field(0, ge=0, le=64)
    beam_size: int = Field(1, ge=1, le=10)
    translate_beam_size: Literal["auto"] | int = "auto"
    audio_context: Literal["trimmed", "full"] = "trimmed"
    min_context_s: Literal["auto"] | float = "auto"

    @field_validator("min_context_s", mode="before")
    @classmethod
    def _auto_or_seconds(cls, value: object) -> object:
        if value == "auto":
            return value
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = -1.0
        if not 0 <= seconds <= WHISPER_WINDOW_S:
            raise ValueError(f"use auto or seconds from 0 to {WHISPER_WINDOW_S:g}")
        return seconds

    @field_validator("translate_beam_size", mode="before")
    @classmethod
    def _auto_or_beam(cls, value: object) -> object:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
            raise ValueError("use auto or a beam size from 1 to 10")
        return value


_DEFAULT = StreamingOptions()


class StreamingConfig(_Section):
    min_step_s: float = Field(_DEFAULT.min_step_s, gt=0, le=10)
    translate_min_step_s: float = Field(_DEFAULT.translate_min_step_s, gt=0, le=10)
    trim_after_s: float = Field(_DEFAULT.trim_after_s, gt=0, le=BUFFER_LIMIT_S)
    max_buffer_s: float = Field(_DEFAULT.max_buffer_s, gt=2, le=BUFFER_LIMIT_S)
    pause_s: float = Field(_DEFAULT.pause_s, gt=0, le=10)
    right_context_s: float = Field(_DEFAULT.right_context_s, ge=0, le=5)
    doubtful_below: float = Field(_DEFAULT.doubtful_below, ge=0, le=1)
    doubtful_right_context_s: float = Field(_DEFAULT.doubtful_right_context_s, ge=0, le=5)
    confident_above: float = Field(_DEFAULT.confident_above, ge=0, le=1)
    confident_right_context_s: float = Field(_DEFAULT.confident_right_context_s, ge=0, le=5)
    long_pause_s: float = Field(_DEFAULT.long_pause_s, gt=0, le=20)
    opening_s: float = Field(_DEFAULT.opening_s, ge=0, le=10)
    translation_by_sentence: bool = _DEFAULT.translation_by_sentence
    vad: bool = _DEFAULT.vad
    vad_threshold: float = Field(_DEFAULT.vad_threshold, gt=0, lt=1)
    prompt_chars: int = Field(_DEFAULT.prompt_chars, ge=0, le=1000)
    max_batch: int = Field(_DEFAULT.max_batch, ge=1, le=512)
    preroll_s: float = Field(_DEFAULT.preroll_s, ge=0, le=2)

    def options(self) -> StreamingOptions:
        return StreamingOptions(**self.model_dump())


class AudioConfig(_Section):
    """Where the meeting audio comes from (the capture process)."""

    source: Literal["loopback", "microphone", "file", "stdin", "sample", "meeting"] = "loopback"
    device: str | int | None = None
    file: str | None = None
    stdin_format: Literal["s16le", "f32le"] = "s16le"
    stdin_rate: int = Field(16000, ge=8000, le=192000)
    chunk_s: float = Field(0.1, ge=0.02, le=1.0)
    stream_id: str = Field("meeting", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    queue_s: float = Field(30.0, ge=1, le=600)
    reopen_backoff_s: float = Field(1.0, gt=0, le=60)
    meeting_port: int = Field(0, ge=0, le=65535)
    headless: bool = False


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
    meeting: bool = False
    meeting_port: int = Field(0, ge=0, le=65535)
    meeting_fps: float = Field(15.0, gt=0, le=30)


class JoinConfig(_Section):
    """`captionbot join`: the meeting the bot joins in a headless Chromium (bot/join)."""

    url: str | None = None
    name: str = Field("Captions", min_length=1, max_length=100)
    platform: Literal["auto", "jitsi", "meet", "zoom", "teams", "generic"] = "auto"
    profiles: str | None = None
    name_field: str | None = None
    join_button: str | None = None
    in_meeting: str | None = None
    leave_button: str | None = None
    participant_tile: str | None = None
    participant_name: str | None = None
    per_participant: bool | None = None
    join_timeout_s: float = Field(30.0, gt=0, le=600)
    lobby_timeout_s: float = Field(600.0, gt=0, le=86400)
    alone_timeout_s: float = Field(60.0, gt=0, le=86400)
    browser: str = "/usr/bin/chromium"
    browser_args: tuple[str, ...] = ()


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


class RayServeConfig(_Section):
    """`captionbot serve --ray`: the ASR deployment on a Ray cluster (the `cluster` extra)."""

    replicas: int = Field(1, ge=1, le=1024)
    replica_cpus: float = Field(1.0, gt=0, le=256)
    replica_gpus: float = Field(0.0, ge=0, le=64)
    autoscale_max_replicas: int = Field(0, ge=0, le=1024)
    target_ongoing_requests: float = Field(4.0, gt=0, le=1024)
    batch_wait_s: float = Field(0.02, ge=0, le=1)
    health_check_period_s: float = Field(2.0, gt=0, le=60)


class ServeConfig(_Section):
    """`captionbot serve`: one engine for many meeting sessions over WebSocket."""

    host: str = "127.0.0.1"
    port: int = Field(8780, ge=0, le=65535)
    token: str | None = None
    session_tokens: dict[str, str] | None = None
    max_sessions: int = Field(4, ge=0, le=4096)
    busy_round_s: float = Field(2.0, gt=0, le=60)
    retry_after_s: float = Field(30.0, gt=0, le=3600)
    session_queue_s: float = Field(10.0, ge=1, le=120)
    max_frame_bytes: int = Field(64000, ge=1024, le=4_000_000)
    slow_reader_messages: int = Field(256, ge=8, le=100_000)
    hello_timeout_s: float = Field(10.0, gt=0, le=300)
    drain_timeout_s: float = Field(10.0, ge=0, le=600)
    out_dir: str | None = "serve-out"
    files_dir: str | None = None
    max_meeting_bots: int = Field(2, ge=0, le=256)
    ray: RayServeConfig = RayServeConfig()


class ServerConfig(_Section):
    """`captionbot run --server URL`: caption with a `captionbot serve` instead of locally."""

    url: str | None = None
    token: str | None = None
    session: str | None = None
    reconnect_max_s: float = Field(10.0, gt=0, le=600)


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
    join: JoinConfig = JoinConfig()
    serve: ServeConfig = ServeConfig()
    server: ServerConfig = ServerConfig()

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value != "auto" and value not in LANGUAGE_CODES:
            raise ValueError(f"unknown language '{value}': use auto or a Whisper code like en, de")
        return value

    @property
    def language_or_none(self) -> str | None:
        return None if self.language == "auto" else self.language


CONFIG_ENV = "CAPTIONBOT_CONFIG"


@dataclass(frozen=True)
class ConfigLocation:
    """The configuration file in use (None: the defaults) and how it was found."""

    path: Path | None
    found_by: str  # "--config", "$CAPTIONBOT_CONFIG", "the user config", "defaults"

    def describe(self) -> str:
        if self.path is None:
            return f"no config file (none at {user_config_path()}): the defaults"
        return f"{self.path} (from {self.found_by})"


def user_config_path() -> Path:
    """`$XDG_CONFIG_HOME/captionbot/config.yaml`, by default `~/.config/captionbot/config.yaml`."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return root / "captionbot" / "config.yaml"


def find_config(explicit: Path | None) -> ConfigLocation:
    """`--config FILE`, else `$CAPTIONBOT_CONFIG`, else the user config if it exists."""
    if explicit is not None:
        return ConfigLocation(Path(explicit), "--config")
    if named := os.environ.get(CONFIG_ENV, "").strip():
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_ENV} names {path}, which is not a file: fix the path or unset it"
            )
        return ConfigLocation(path, f"${CONFIG_ENV}")
    user = user_config_path()
    if user.is_file():
        return ConfigLocation(user, "the user config")
    return ConfigLocation(None, "defaults")


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
