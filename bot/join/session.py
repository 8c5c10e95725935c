"""A joined meeting: the bot's supervisor plus a browser stage that sits in the meeting.

The browser is one more stage of the supervisor (`add_stage`): started after the ASR engine
loaded, restarted like capture when it crashes (it rejoins; captions committed so far are
kept, since they live in the supervisor). Its `MeetingEvent`s come back with its events: a
"left" (alone, meeting ended) or "failed" event stops the bot; files are finalized by the
supervisor in every case.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.config import Config
from bot.errors import ConfigError
from bot.join.browser import (
    EXIT_BAD_URL,
    BrowserSettings,
    MeetingError,
    browser_main,
)
from bot.join.platforms import resolve_profile
from bot.messages import MeetingEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrowserStageArgs:
    """The browser stage's arguments: `events` carries its MeetingEvents to the session."""

    settings: BrowserSettings
    events: Queue[Any]
    stop: Event


def browser_stage_main(args: BrowserStageArgs) -> None:  # pragma: no cover - child process
    browser_main(args.settings, args.events, args.stop)


def check_url(url: str | None) -> str:
    """The meeting URL, or a one-line error for one that cannot be a meeting page."""
    if not url:
        raise MeetingError("no meeting URL: captionbot join URL (or join.url)", EXIT_BAD_URL)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise MeetingError(
            f"'{url}' is not a meeting URL: give an http:// or https:// address", EXIT_BAD_URL
        )
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def meeting_config(config: Config) -> Config:
    """The configuration with the meeting's audio source and camera sink on chosen ports."""
    audio = config.audio.model_copy(
        update={"source": "meeting", "meeting_port": config.audio.meeting_port or free_port()}
    )
    sinks = config.sinks.model_copy(
        update={"meeting": True, "meeting_port": config.sinks.meeting_port or free_port()}
    )
    return config.model_copy(update={"audio": audio, "sinks": sinks})


class MeetingSession:
    """Runs the bot in one meeting until it leaves; `run()` gives the supervisor's result."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        stem: str | None = None,
        on_update: Any = None,
        on_event: Any = None,
        screenshots: bool = False,
    ) -> None:
        from bot.runtime.supervisor import Supervisor

        url = check_url(config.join.url)
        if config.audio.source != "meeting" and not config.sinks.meeting:
            raise ConfigError("a meeting session needs audio.source: meeting or sinks.meeting")
        self.config = config = meeting_config(config)
        self.profile = resolve_profile(config.join, url)
        self.on_event = on_event
        self.settings = BrowserSettings(
            url=url,
            name=config.join.name,
            profile=self.profile,
            audio_url=f"ws://127.0.0.1:{config.audio.meeting_port}/audio",
            video_url=f"ws://127.0.0.1:{config.sinks.meeting_port}/video",
            width=config.video.width,
            height=config.video.height,
            join_timeout_s=config.join.join_timeout_s,
            lobby_timeout_s=config.join.lobby_timeout_s,
            alone_timeout_s=config.join.alone_timeout_s,
            executable=config.join.browser,
            extra_args=tuple(config.join.browser_args),
            screenshot_dir=str(out_dir) if screenshots else None,
        )
        self.failure: MeetingEvent | None = None
        self.left: MeetingEvent | None = None
        self.joined_at: float | None = None
        remote: dict[str, Any] = {}
        if config.server.url:  # recognized on a captionbot serve
            from bot.serve.client import remote_asr_stage_main

            remote["asr_entry"] = remote_asr_stage_main
        self.supervisor = Supervisor(config, out_dir, stem=stem, on_update=on_update, **remote)
        self.browser = self.supervisor.add_stage(
            "browser", browser_stage_main, self._browser_args, on_event=self._handle
        )

    def _browser_args(self, context: SpawnContext) -> BrowserStageArgs:
        return BrowserStageArgs(self.settings, context.Queue(), self.supervisor.stop_event)

    def run(self) -> Any:
        """The supervisor's result once the bot left (or failed, or was stopped)."""
        return self.supervisor.run()

    def _handle(self, event: object) -> None:
        if not isinstance(event, MeetingEvent):
            return
        logger.info("meeting: %s %s", event.kind, event.message)
        if event.kind == "joined":
            self.joined_at = time.monotonic()
        elif event.kind == "failed":
            self.failure = event
            self.supervisor.request_stop()
        elif event.kind == "left":
            self.left = event
            self.supervisor.request_stop()
        if self.on_event is not None:
            self.on_event(event)
