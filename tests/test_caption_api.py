"""Zoom and YouTube caption clients against a real local HTTP server that records what arrives."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.errors import ConfigError
from bot.messages import CaptionUpdate, CommittedWord
from bot.outputs import caption_api
from bot.outputs.caption_api import YouTubeCaptionSender, ZoomCaptionSender


@dataclass
class Endpoint:
    """What the caption endpoint received, and how it should answer."""

    requests: list[dict] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer first
    gate: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def accepted(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200]


@pytest.fixture()
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()
    state.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            state.gate.wait(10)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            status = state.fail_next.pop(0) if state.fail_next else 200
            state.requests.append(
                {
                    "query": query,
                    "body": body,
                    "status": status,
                    "type": self.headers["Content-Type"],
                }
            )
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/closedcaption?id=abc&ns=meeting"
    yield state
    state.gate.set()
    server.shutdown()


def _words(text: str) -> tuple[CommittedWord, ...]:
    return tuple(CommittedWord(" " + w, 0, 0, 1, 0, 0) for w in text.split())


def _update(text: str, final: bool = False) -> CaptionUpdate:
    return CaptionUpdate("meeting", 0.0, _words(text), (), "en", final)


def test_zoom_gets_each_sentence_once_in_order_with_seq_and_lang(endpoint: Endpoint) -> None:
    sender = ZoomCaptionSender(endpoint.url, lang="en-US")
    sender.submit(_update("Good morning everyone."))
    sender.submit(_update("Let us start"))
    sender.submit(_update("with the agenda. Any questions?"))
    sender.close()
    got = endpoint.accepted()
    assert [r["body"] for r in got] == [
        "Good morning everyone.",
        "Let us start with the agenda.",
        "Any questions?",
    ]
    assert [r["query"]["seq"] for r in got] == ["1", "2", "3"]
    assert all(r["query"]["lang"] == "en-US" and r["query"]["id"] == "abc" for r in got)
    assert all(r["type"].startswith("text/plain") for r in got)
    assert sender.stats.sent == 3 and sender.stats.failed == 0


def test_a_server_error_is_retried_under_the_same_seq_without_duplicates(
    endpoint: Endpoint,
) -> None:
    endpoint.fail_next = [500, 503]
    sender = ZoomCaptionSender(endpoint.url)
    sender.submit(_update("First sentence."))
    sender.submit(_update("Second sentence."))
    sender.close(timeout=10)
    assert [r["status"] for r in endpoint.requests] == [500, 503, 200, 200]
    assert [r["query"]["seq"] for r in endpoint.requests] == ["1", "1", "1", "2"]
    assert [r["body"] for r in endpoint.accepted()] == ["First sentence.", "Second sentence."]
    assert sender.stats.retries == 2


def test_a_rejected_caption_is_skipped_and_the_next_one_still_goes(endpoint: Endpoint) -> None:
    endpoint.fail_next = [400]
    sender = ZoomCaptionSender(endpoint.url)
    sender.submit(_update("Rejected one."))
    sender.submit(_update("Accepted one."))
    sender.close()
    assert [r["query"]["seq"] for r in endpoint.requests] == ["1", "2"]
    assert sender.stats.failed == 1 and sender.stats.sent == 1


def test_submit_never_waits_for_the_endpoint(endpoint: Endpoint) -> None:
    endpoint.gate.clear()  # the endpoint hangs until released
    sender = ZoomCaptionSender(endpoint.url)
    for i in range(20):
        sender.submit(_update(f"Sentence number {i}."))
    assert not endpoint.requests  # all twenty submits returned while the first POST hangs
    endpoint.gate.set()
    sender.close(timeout=10)
    assert [r["body"] for r in endpoint.accepted()] == [f"Sentence number {i}." for i in range(20)]


def test_the_end_of_the_meeting_sends_an_unfinished_phrase(endpoint: Endpoint) -> None:
    sender = ZoomCaptionSender(endpoint.url)
    sender.submit(_update("and that is all", final=True))
    sender.close()
    assert [r["body"] for r in endpoint.accepted()] == ["and that is all"]


def test_a_full_stop_held_for_the_next_word_ends_its_phrase_and_never_opens_a_line(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy holds a word's full stop at a pause and writes it in front of the next word
    (". Ask"). In the phrase it closes, it ends the sentence there; once a pause sent that
    phrase, the next caption line must not open with it (Zoom showed ". Ask what you can do")."""
    monkeypatch.setattr(caption_api, "PHRASE_PAUSE_S", 0.2)
    sender = ZoomCaptionSender(endpoint.url)
    sender.submit(_update("what your country can do for you"))
    sender.submit(CaptionUpdate("meeting", 0.0, (CommittedWord(". Ask", 0, 0, 1, 0, 0),), ()))
    sender.submit(_update("what you can do"))
    deadline = time.monotonic() + 5
    while len(endpoint.accepted()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the phrase in progress goes out after the pause
    sender.submit(CaptionUpdate("meeting", 0.0, (CommittedWord(".", 0, 0, 1, 0, 0),), ()))
    sender.submit(_update("For your country.", final=True))
    sender.close()
    assert [r["body"] for r in endpoint.accepted()] == [
        "what your country can do for you.",
        "Ask what you can do",
        "For your country.",
    ]


def test_youtube_gets_a_timestamp_line_then_the_text(endpoint: Endpoint) -> None:
    sender = YouTubeCaptionSender(endpoint.url)
    sender.submit(_update("Welcome to the stream."))
    sender.close()
    (request,) = endpoint.accepted()
    stamp, text, rest = request["body"].split("\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", stamp)
    assert text == "Welcome to the stream." and rest == ""
    assert request["query"]["seq"] == "1" and "lang" not in request["query"]


def test_a_bad_url_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="Zoom caption URL"):
        ZoomCaptionSender("not a url")
