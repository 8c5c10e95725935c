"""The overlay server and pages: live updates over WebSocket/SSE, tokens, and a real browser."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from bot.config import OverlayConfig
from bot.errors import ConfigError, OutputError
from bot.messages import CaptionUpdate, CommittedWord, Word
from bot.overlay.server import OverlayServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _update(committed: str = "", tentative: str = "", stream: str = "meeting") -> CaptionUpdate:
    return CaptionUpdate(
        stream,
        1.0,
        tuple(CommittedWord(" " + w, 0, 0, 1, 0, 0) for w in committed.split()),
        tuple(Word(" " + w, 0, 0) for w in tentative.split()),
        language="en",
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server() -> Iterator[OverlayServer]:
    overlay = OverlayServer(OverlayConfig(port=0))
    overlay.start()
    yield overlay
    overlay.stop()


def _sse_messages(url: str, count: int) -> list[dict]:
    messages = []
    with urllib.request.urlopen(url, timeout=5) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: "):
                messages.append(json.loads(line[len("data: ") :]))
                if len(messages) == count:
                    break
    return messages


# -- server ----------------------------------------------------------------------------------------


def test_a_late_joiner_gets_the_whole_state_at_once(server: OverlayServer) -> None:
    server.publish(_update("hello everyone", "and"))
    server.publish(_update("and welcome.", "to the"))
    time.sleep(0.2)
    (state,) = _sse_messages(server.url + "events", 1)
    assert state == {
        "type": "state",
        "stream": "meeting",
        "committed": "hello everyone and welcome.",
        "tentative": "to the",
        "language": "en",
        "final": False,
    }


def test_updates_are_pushed_as_deltas_after_the_state(server: OverlayServer) -> None:
    import threading

    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(_sse_messages(server.url + "events", 3)))
    reader.start()
    time.sleep(0.5)
    server.publish(_update("first words", "maybe"))
    server.publish(_update("second.", ""))
    reader.join(5)
    assert [m["type"] for m in got] == ["state", "update", "update"]
    assert got[1]["committed"] == " first words" and got[1]["tentative"] == "maybe"
    assert got[2]["committed"] == " second." and got[2]["tentative"] == ""


def test_streams_are_kept_apart(server: OverlayServer) -> None:
    server.publish(_update("in room a", stream="room-a"))
    server.publish(_update("in room b", stream="room-b"))
    time.sleep(0.2)
    (a,) = _sse_messages(server.url + "events?stream=room-a", 1)
    assert a["committed"] == "in room a"
    status, body = _get(server.url + "api/streams")
    assert status == 200 and {s["stream"] for s in json.loads(body)["streams"]} == {
        "room-a",
        "room-b",
    }
    assert _get(server.url + "events?stream=../etc")[0] == 400


def test_only_the_overlay_pages_are_served(server: OverlayServer) -> None:
    assert _get(server.url + "captions.html")[0] == 200
    assert _get(server.url + "live.html")[0] == 200
    for path in ("../bot/config.py", "%2e%2e/pyproject.toml", "overlays/", ".git/config", "x.py"):
        assert _get(server.url + path)[0] == 404, path


def test_binding_beyond_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match="overlay.token"):
        OverlayServer(OverlayConfig(host="0.0.0.0", port=0))


def test_with_a_token_every_request_must_carry_it() -> None:
    overlay = OverlayServer(OverlayConfig(host="0.0.0.0", port=0, token="s3cret"))
    overlay.start()
    try:
        assert _get(overlay.url + "captions.html")[0] == 403
        assert _get(overlay.url + "events")[0] == 403
        assert _get(overlay.url + "captions.html?token=wrong")[0] == 403
        assert _get(overlay.url + "captions.html?token=s3cret")[0] == 200
        request = urllib.request.Request(
            overlay.url + "api/streams", headers={"Authorization": "Bearer s3cret"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    finally:
        overlay.stop()


def test_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OutputError, match=f"{port}.*--overlay-port"):
            OverlayServer(OverlayConfig(port=port)).start()


# -- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.textContent || '').includes(t)",
        arg=[selector, text],
        timeout=10_000,
    )


def test_captions_page_shows_published_text_and_greys_the_tentative_tail(
    browser, server: OverlayServer
) -> None:
    page = browser.new_page(viewport={"width": 800, "height": 300})
    page.goto(server.url + "captions.html?size=48&color=%23ff0000&tentative=%230000ff")
    server.publish(_update("Grüße aus dem Meeting", "noch nicht"))
    _wait_text(page, "#committed", "Grüße aus dem Meeting")
    _wait_text(page, "#tentative", "noch nicht")
    colour = page.eval_on_selector("#committed", "e => getComputedStyle(e).color")
    grey = page.eval_on_selector("#tentative", "e => getComputedStyle(e).color")
    assert colour == "rgb(255, 0, 0)" and grey == "rgb(0, 0, 255)"
    assert page.eval_on_selector("#text", "e => getComputedStyle(e).fontSize") == "48px"
    shot = np.frombuffer(page.screenshot(type="png"), np.uint8)
    import cv2

    image = cv2.imdecode(shot, cv2.IMREAD_COLOR)
    red = (image[:, :, 2] > 200) & (image[:, :, 1] < 60) & (image[:, :, 0] < 60)
    blue = (image[:, :, 0] > 200) & (image[:, :, 1] < 60) & (image[:, :, 2] < 60)
    assert red.sum() > 300 and blue.sum() > 100
    rows = np.where(red.any(axis=1))[0]
    assert rows.min() > 300 // 3, "captions sit at the bottom"
    page.close()


def test_the_page_reconnects_after_the_server_restarts(browser) -> None:
    port = _free_port()
    first = OverlayServer(OverlayConfig(port=port))
    first.start()
    page = browser.new_page()
    page.goto(first.url + "captions.html")
    first.publish(_update("before the restart"))
    _wait_text(page, "#committed", "before the restart")
    first.stop()
    second = OverlayServer(OverlayConfig(port=port))
    second.start()
    try:
        second.publish(_update("after the restart"))
        _wait_text(page, "#committed", "after the restart")
        page.wait_for_function("document.body.dataset.status === 'live'", timeout=10_000)
    finally:
        page.close()
        second.stop()


def test_live_page_keeps_the_history_and_a_token_is_required_beyond_loopback(browser) -> None:
    overlay = OverlayServer(OverlayConfig(host="0.0.0.0", port=0, token="t0ken"))
    overlay.start()
    try:
        page = browser.new_page()
        response = page.goto(overlay.url + "live.html")
        assert response is not None and response.status == 403
        page.goto(overlay.page_url("live.html"))
        for sentence in ("One sentence here.", "Another one follows.", "And a third."):
            overlay.publish(_update(sentence, "tail words"))
        _wait_text(page, "#transcript", "And a third.")
        text = page.inner_text("#transcript")
        assert "One sentence here." in text and "Another one follows." in text
        assert page.inner_text("#tentative") == "tail words"
        page.close()
    finally:
        overlay.stop()


def test_captionbot_overlay_serves_a_live_caption_file_as_it_grows(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    from bot.outputs.live_files import LiveCaptionFiles

    files = LiveCaptionFiles(tmp_path, "meeting", formats=("json",), flush_every_s=0)
    files.add(_update("first part of the talk", "and"))
    overlay = subprocess.Popen(
        [sys.executable, "-m", "bot", "overlay", "--follow", str(tmp_path / "meeting.json")]
        + ["--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert overlay.stdout is not None
        url = overlay.stdout.readline().split()[-1].replace("captions.html", "")

        def committed() -> str:
            return json.loads(_get(url + "api/transcript")[1])["committed"]

        deadline = time.monotonic() + 10
        while committed() != "first part of the talk" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert committed() == "first part of the talk"
        files.add(_update("and the second part."))
        while "second" not in committed() and time.monotonic() < deadline + 5:
            time.sleep(0.1)
        assert committed() == "first part of the talk and the second part."
    finally:
        overlay.send_signal(signal.SIGINT)
        overlay.wait(10)
    assert overlay.returncode == 0
