"""The browser process of `captionbot join`: a headless Chromium that joins the meeting.

Playwright drives the system's Chromium (`join.browser`; nothing is downloaded). Before any page
script runs, page_bot.js replaces the camera and microphone and taps the remote audio (see its
header). This process joins (name field, join button, lobby), watches the meeting (alone, ended)
and leaves; it tells the session what happened with `MeetingEvent`s. A crash of the browser
ends this process with a non-zero code and no "left"/"failed" event: the session restarts it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from importlib.resources import files
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Queue
from typing import Any

from bot.errors import CaptionbotError
from bot.join.platforms import PlatformProfile
from bot.messages import MeetingEvent

logger = logging.getLogger(__name__)

# Exit codes of `captionbot join` failures (2 is a usage error: a bad URL or option).
EXIT_BAD_URL = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_ADMITTED = 4
EXIT_LOBBY_TIMEOUT = 5
EXIT_BROWSER = 6

POLL_S = 0.5
# After clicking join, the page must keep looking "inside" this long to count as joined.
SETTLED_S = 1.0

# Chromium's own cost on a shared box: no GPU process, no extensions, no background
# throttling of the page's timers (they feed the camera), a fixed small window. Playwright adds
# --headless, --no-sandbox (as root) and --mute-audio itself.
CHROMIUM_ARGS = (
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--in-process-gpu",
    "--disable-extensions",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1280,720",
)


class MeetingError(CaptionbotError):
    """Joining or staying in the meeting failed; `exit_code` is the CLI's exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BrowserCrashed(Exception):
    """The page or the browser died: the session restarts this process and it rejoins."""


@dataclass(frozen=True)
class BrowserSettings:
    """Everything the browser process needs (crosses to the spawned process)."""

    url: str
    name: str
    profile: PlatformProfile
    audio_url: str
    video_url: str
    width: int
    height: int
    join_timeout_s: float
    lobby_timeout_s: float
    alone_timeout_s: float
    executable: str
    extra_args: tuple[str, ...] = ()
    screenshot_dir: str | None = None


def page_script(settings: BrowserSettings) -> str:
    """page_bot.js with this meeting's settings filled in."""
    profile = settings.profile
    page_config = {
        "audioUrl": settings.audio_url,
        "videoUrl": settings.video_url,
        "width": settings.width,
        "height": settings.height,
        "perParticipant": profile.per_participant,
        "tileSelector": profile.participant_tile,
        "nameSelector": profile.participant_name,
    }
    source = files("bot.join").joinpath("page_bot.js").read_text(encoding="utf-8")
    return source.replace("CAPTIONBOT_CONFIG", json.dumps(page_config))


class MeetingBrowser:
    """One Chromium in one meeting: join, stay while others are there, leave."""

    def __init__(self, settings: BrowserSettings, events: Queue, stop: Event) -> None:
        self.settings = settings
        self.profile = settings.profile
        self.events = events
        self.stop = stop
        self.page: Any = None
        self._crashed = False

    def run(self, playwright: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError

        browser = self._launch(playwright)
        try:
            context = browser.new_context(
                locale="en-US",
                viewport={"width": 1280, "height": 720},
                permissions=["camera", "microphone"],
            )
            context.add_init_script(page_script(self.settings))
            self.page = context.new_page()
            self.page.on("crash", lambda *_: self._mark_crashed())
            self.page.on("console", lambda m: logger.debug("page console: %s", m.text))
            self.page.on("pageerror", lambda e: logger.debug("page error: %s", e))
            browser.on("disconnected", lambda *_: self._mark_crashed())
            try:
                self._open()
                self._join()
                reason = self._stay()
                self._leave()
            except MeetingError:
                self._screenshot()
                raise
            except PlaywrightError as error:
                if self._crashed or "closed" in str(error).lower():
                    raise BrowserCrashed(str(error).splitlines()[0]) from None
                self._screenshot()
                raise MeetingError(
                    f"the meeting page failed: {str(error).splitlines()[0]}", EXIT_NOT_ADMITTED
                ) from None
            self.events.put(MeetingEvent("left", reason))
        finally:
            with contextlib.suppress(PlaywrightError):
                browser.close()

    def _mark_crashed(self) -> None:
        self._crashed = True

    def _launch(self, playwright: Any) -> Any:
        from playwright.sync_api import Error as PlaywrightError

        settings = self.settings
        if not Path(settings.executable).is_file():
            raise MeetingError(
                f"Chromium not found at {settings.executable}: install the chromium package or "
                "set join.browser",
                EXIT_BROWSER,
            )
        try:
            return playwright.chromium.launch(
                executable_path=settings.executable,
                args=[*CHROMIUM_ARGS, *settings.extra_args],
                headless=True,
            )
        except PlaywrightError as error:
            raise MeetingError(
                f"Chromium ({settings.executable}) did not start: {str(error).splitlines()[0]}",
                EXIT_BROWSER,
            ) from None

    # -- steps ------------------------------------------------------------------------------------

    def _open(self) -> None:
        from playwright.sync_api import Error as PlaywrightError

        url = self.profile.meeting_url(self.settings.url, self.settings.name)
        try:
            response = self.page.goto(
                url, wait_until="domcontentloaded", timeout=self.settings.join_timeout_s * 1000
            )
        except PlaywrightError as error:
            text = str(error)
            code = re.search(r"net::(ERR_[A-Z_]+)", text)
            if code:
                raise MeetingError(
                    f"cannot reach the meeting at {self.settings.url} ({code.group(1)}): check "
                    "the URL and the network",
                    EXIT_UNREACHABLE,
                ) from None
            if "Timeout" in text:
                raise MeetingError(
                    f"the meeting page {self.settings.url} did not load within "
                    f"{self.settings.join_timeout_s:g} s (join.join_timeout_s)",
                    EXIT_UNREACHABLE,
                ) from None
            raise
        if response is not None and response.status >= 400:
            raise MeetingError(
                f"the meeting page {self.settings.url} answered HTTP {response.status}: check "
                "the URL",
                EXIT_UNREACHABLE,
            )

    def _join(self) -> None:
        profile, page, timeout_s = self.profile, self.page, self.settings.join_timeout_s
        wanted = [s for s in (profile.name_field, profile.join_button) if s]
        if wanted:
            self._wait_for_any(wanted, timeout_s)
        if profile.name_field and self._visible(profile.name_field):
            page.locator(profile.name_field).first.fill(self.settings.name)
        if profile.join_button:
            if not self._wait_for_any([profile.join_button], 2.0 if wanted else timeout_s):
                raise MeetingError(
                    f"no join button ({profile.join_button}) on the meeting page after "
                    f"{timeout_s:g} s: set join.join_button to its CSS selector "
                    f"(platform {profile.name})",
                    EXIT_NOT_ADMITTED,
                )
            page.locator(profile.join_button).first.click(timeout=timeout_s * 1000)
        self._wait_admitted()

    def _wait_admitted(self) -> None:
        profile, settings = self.profile, self.settings
        deadline = time.monotonic() + settings.lobby_timeout_s
        settled_since: float | None = None
        waiting = False
        while True:
            text = self._page_text()
            ended = self._first_text(profile.ended_text, text)
            if ended:
                raise MeetingError(
                    f"the meeting did not let the bot in: the page says '{ended}'",
                    EXIT_NOT_ADMITTED,
                )
            lobby = self._first_text(profile.lobby_text, text)
            if profile.in_meeting:
                inside = self._visible(profile.in_meeting) and not lobby
            else:
                gone = not profile.join_button or not self._visible(profile.join_button)
                inside = gone and not lobby
            if inside:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= SETTLED_S:
                    break
            else:
                settled_since = None
            if lobby and not waiting:
                waiting = True
                self.events.put(MeetingEvent("waiting", f"in the lobby: '{lobby}'"))
            if self.stop.is_set():
                raise MeetingError("stopped before the meeting let the bot in", EXIT_NOT_ADMITTED)
            if time.monotonic() >= deadline:
                raise MeetingError(
                    f"still waiting to be let in after {settings.lobby_timeout_s:g} s "
                    "(join.lobby_timeout_s): nobody admitted the bot",
                    EXIT_LOBBY_TIMEOUT,
                )
            self.page.wait_for_timeout(POLL_S * 1000)
        self.events.put(MeetingEvent("joined", f"joined as {settings.name}"))

    def _stay(self) -> str:
        """Watch the meeting until it is time to leave; the reason."""
        alone_since = time.monotonic()
        seen = -1
        while True:
            if self._crashed:
                raise BrowserCrashed("the browser crashed")
            if self.stop.is_set():
                return "asked to stop"
            ended = self._first_text(self.profile.ended_text, self._page_text())
            if ended:
                return f"the meeting ended ('{ended}')"
            others = self._others()
            if others != seen:
                logger.info("%d other participant(s) in the meeting", others)
                seen = others
            if others > 0:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since >= self.settings.alone_timeout_s:
                return f"alone in the meeting for {self.settings.alone_timeout_s:g} s"
            self.page.wait_for_timeout(POLL_S * 1000)

    def _leave(self) -> None:
        button = self.profile.leave_button
        if button and self._visible(button):
            try:
                self.page.locator(button).first.click(timeout=2000)
                self.page.wait_for_timeout(300)
            except Exception:  # leaving anyway: closing the browser hangs up
                logger.debug("leave button did not respond", exc_info=True)

    # -- page queries -----------------------------------------------------------------------------

    def _others(self) -> int:
        """How many other participants are in the meeting now."""
        profile = self.profile
        if profile.participant_tile:
            tiles = self.page.locator(profile.participant_tile).count()
            return max(tiles - profile.own_tiles, 0)
        state = self.page.evaluate("() => window.__captionbot ? window.__captionbot.state() : {}")
        return int(state.get("remoteAudioTracks", 0))

    def _page_text(self) -> str:
        return self.page.evaluate(
            "() => document.body ? document.body.innerText.toLowerCase() : ''"
        )

    @staticmethod
    def _first_text(texts: tuple[str, ...], page_text: str) -> str | None:
        return next((t for t in texts if t in page_text), None)

    def _visible(self, selector: str) -> bool:
        try:
            return self.page.locator(selector).first.is_visible()
        except Exception:  # a selector the page's engine rejects counts as absent
            return False

    def _wait_for_any(self, selectors: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(self._visible(s) for s in selectors):
                return True
            if self.stop.is_set():
                return False
            self.page.wait_for_timeout(200)
        return any(self._visible(s) for s in selectors)

    def _screenshot(self) -> None:
        if not self.settings.screenshot_dir or self.page is None:
            return
        path = Path(self.settings.screenshot_dir) / f"join-failure-{time.strftime('%H%M%S')}.png"
        try:
            self.page.screenshot(path=str(path))
            logger.warning("screenshot of the meeting page: %s", path)
        except Exception:
            logger.debug("no screenshot", exc_info=True)


def browser_main(settings: BrowserSettings, events: Queue, stop: Event) -> None:
    """Process entry of the browser process (logging and signals set up by the stage)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        events.put(
            MeetingEvent(
                "failed",
                "captionbot join needs Playwright: pip install 'captionbot[join]'",
                EXIT_BROWSER,
            )
        )
        return
    try:
        with sync_playwright() as playwright:
            MeetingBrowser(settings, events, stop).run(playwright)
    except MeetingError as error:
        events.put(MeetingEvent("failed", str(error), error.exit_code))
    except BrowserCrashed as crash:
        logger.warning("browser crashed: %s", crash)
        sys.exit(3)
