"""Caption participants started through the service's API (`POST /api/sessions {"url": ...}`).

Each bot is its own `captionbot run` process joining the meeting (bot/join) with the service
itself as its engine (`server.url` = this service over loopback): a crashing browser or bot
never takes the service down, the meeting's streams are ordinary sessions of the hub (batched
with every other), and stopping a bot is SIGTERM, on which it leaves the meeting and finalizes
its caption files. The bot's configuration is the service's own (its join section, caption
style, outputs) with the meeting's fields set, written to a private file for the child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import IO, Any

import yaml

from bot.config import Config

STOP_WAIT_S = 30.0
LOG_LINES = 20


class MeetingRefused(Exception):
    """The API cannot start this meeting bot (off, full, bad request): the message says why."""


@dataclass
class MeetingBot:
    """One caption participant's process and what it said."""

    session: str
    url: str
    name: str
    process: subprocess.Popen
    started_at: float = field(default_factory=time.time)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    joined: bool = False

    @property
    def state(self) -> str:
        code = self.process.poll()
        if code is None:
            return "in meeting" if self.joined else "joining"
        return "left" if code == 0 else f"failed (exit {code})"

    def view(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "kind": "meeting",
            "url": self.url,
            "name": self.name,
            "state": self.state,
            "exit_code": self.process.poll(),
            "last_line": self.lines[-1] if self.lines else "",
        }


class MeetingBots:
    """The caption participants of one service: start, list, stop (see the module docstring)."""

    def __init__(self, config: Config, out_dir: Path, limit: int) -> None:
        self.config = config
        self.service_url = ""  # set once the service listens
        self.out_dir = out_dir
        self.limit = limit
        self.bots: dict[str, MeetingBot] = {}

    def start(self, session: str, body: dict[str, Any]) -> MeetingBot:
        """A bot joining body["url"] as session `session` (names its streams on the hub)."""
        if self.limit <= 0:
            raise MeetingRefused("meeting bots are off: set serve.max_meeting_bots")
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise MeetingRefused('"url" must be the meeting\'s http(s) address')
        name = body.get("name", self.config.join.name)
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise MeetingRefused('"name" must be the bot\'s display name (1-64 characters)')
        live = [b for b in self.bots.values() if b.process.poll() is None]
        if session in self.bots and self.bots[session].process.poll() is None:
            raise MeetingRefused(f"session '{session}' is already in a meeting")
        if len(live) >= self.limit:
            raise MeetingRefused(f"busy: all {self.limit} meeting bots in use")
        config_path = self._write_config(session, url, name, body)
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C at the service's terminal is the service's
        )
        bot = MeetingBot(session, url, name, process)
        Thread(target=self._follow, args=(bot, process.stdout), daemon=True).start()
        self.bots[session] = bot
        return bot

    def stop(self, session: str) -> bool:
        """Ask the bot to leave (it finalizes its files); False if there is no such bot."""
        bot = self.bots.get(session)
        if bot is None:
            return False
        if bot.process.poll() is None:
            bot.process.send_signal(signal.SIGTERM)
        return True

    def close(self) -> None:
        """Every bot leaves; one that does not within STOP_WAIT_S is killed."""
        for session in list(self.bots):
            self.stop(session)
        deadline = time.monotonic() + STOP_WAIT_S
        for bot in self.bots.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                bot.process.wait(max(deadline - time.monotonic(), 0.1))
            if bot.process.poll() is None:
                bot.process.kill()
                bot.process.wait()

    def _write_config(self, session: str, url: str, name: str, body: dict[str, Any]) -> Path:
        data = self.config.model_dump(mode="json")
        data["task"] = body.get("task", data["task"])
        data["language"] = body.get("language") or data["language"]
        data["join"].update(url=url, name=name)
        if body.get("platform"):
            data["join"]["platform"] = body["platform"]
        data["audio"].update(source="meeting", meeting_port=0)
        data["sinks"].update(meeting=True, meeting_port=0)
        data["overlay"]["enabled"] = False
        data["outputs"]["dir"] = str(self.out_dir / session)  # the bot's files, speakers named
        data["server"].update(url=self.service_url, token=self.config.serve.token, session=session)
        # Validated here, so a bad field is the API's 400 rather than the child's exit code.
        try:
            Config.model_validate(data)
        except ValueError as error:
            first = str(error).splitlines()
            raise MeetingRefused(f"bad meeting session: {' '.join(first[:3])}") from None
        folder = self.out_dir / ".meeting-bots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{session}.yaml"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the token
        with os.fdopen(descriptor, "w") as file:
            yaml.safe_dump(data, file, sort_keys=False)
        return path

    @staticmethod
    def _follow(bot: MeetingBot, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            line = line.rstrip()
            if not line:
                continue
            bot.lines.append(line)
            if "joined as" in line:
                bot.joined = True
