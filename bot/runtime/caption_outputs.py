"""The outputs that live in the supervisor's process, built from the configuration.

Shared by every stream: the overlay server (it keys captions by stream id) and the closed-caption
APIs (Zoom, YouTube). Per stream: its live caption files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Config
from bot.messages import CaptionUpdate

if TYPE_CHECKING:
    from bot.outputs.caption_api import CaptionSender
    from bot.overlay.server import OverlayServer
    from bot.runtime.caption_router import CaptionOutput


class OverlayOutput:
    """Feeds the overlay server; the server itself is started and stopped by the supervisor."""

    def __init__(self, server: OverlayServer) -> None:
        self.server = server

    def add(self, update: CaptionUpdate) -> None:
        self.server.publish(update)

    def close(self) -> None:
        pass


class SenderOutput:
    """Feeds a closed-caption API client (Zoom, YouTube)."""

    def __init__(self, sender: CaptionSender) -> None:
        self.sender = sender

    def add(self, update: CaptionUpdate) -> None:
        self.sender.submit(update)

    def close(self) -> None:
        self.sender.close()


def caption_api_outputs(config: Config) -> list[CaptionOutput]:
    """A sender per configured closed-caption API."""
    outputs = config.outputs
    senders: list[CaptionOutput] = []
    if outputs.zoom_cc_url or outputs.youtube_cc_url:
        from bot.outputs.caption_api import YouTubeCaptionSender, ZoomCaptionSender

        if outputs.zoom_cc_url:
            zoom = ZoomCaptionSender(outputs.zoom_cc_url, lang=outputs.cc_language)
            senders.append(SenderOutput(zoom))
        if outputs.youtube_cc_url:
            senders.append(SenderOutput(YouTubeCaptionSender(outputs.youtube_cc_url)))
    return senders


def audio_name(config: Config) -> str:
    """What the caption files say the audio was."""
    audio = config.audio
    if audio.source == "file":
        return str(audio.file)
    if audio.source == "sample":
        from bot.audio.samples import bundled_sample

        return bundled_sample().name
    return f"{audio.source}:{audio.device if audio.device is not None else 'default'}"


def caption_file_meta(config: Config, stream_id: str) -> dict[str, Any]:
    return {
        "stream_id": stream_id,
        "audio": audio_name(config),
        "model": config.engine.model,
        "engine": config.engine.name,
        "task": config.task,
    }


def caption_file_paths(config: Config, out_dir: Path, stem: str) -> dict[str, Path]:
    return {fmt: out_dir / f"{stem}.{fmt}" for fmt in config.outputs.formats}
