"""Closed captions pushed into the meeting or the live stream itself: Zoom and YouTube Live.

- Zoom "third-party closed captioning": POST the caption text (text/plain) to the meeting's API
  token URL with `seq` (increasing) and `lang` query parameters.
- YouTube Live HTTP caption ingestion: POST to the stream's ingestion URL with `seq`; the body is
  a UTC timestamp line (`YYYY-MM-DDTHH:MM:SS.mmm`) followed by the caption text.

Committed words are grouped into phrases (a sentence end, a long phrase, or a pause ends one)
and sent in order from a background thread: `submit()` never blocks the pipeline. Network errors,
429 and 5xx are retried with exponential backoff under the same `seq` (no duplicates); other
4xx answers are logged and the phrase is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.messages import CaptionUpdate, CommittedWord, join_words
from bot.text import closing_marks, ends_sentence

logger = logging.getLogger(__name__)

MAX_PHRASE_WORDS = 16
PHRASE_PAUSE_S = 2.0
QUEUE_PHRASES = 200
RETRIES = 6
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
TIMEOUT_S = 10.0


@dataclass
class SenderStats:
    sent: int = 0
    retries: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Phrase:
    text: str
    at: datetime  # when its first word was committed


class CaptionSender:
    """Sends committed phrases to an HTTP caption endpoint, in order, off the caller's thread."""

    service = "captions"

    def __init__(self, url: str, lang: str = "en-US", first_seq: int = 1) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            from bot.errors import ConfigError

            raise ConfigError(f"{self.service} caption URL must be an http(s) URL (got {url!r})")
        self.url = url
        self.lang = lang
        self.seq = first_seq
        self.stats = SenderStats()
        self._pending: list[CommittedWord] = []
        self._pending_since = 0.0
        self._phrases: queue.Queue[Phrase | None] = queue.Queue(maxsize=QUEUE_PHRASES)
        self._lock = threading.Lock()
        self._deadline = float("inf")  # set by close(): retries stop there
        self._thread = threading.Thread(
            target=self._run, name=f"{self.service} sender", daemon=True
        )
        self._thread.start()

    # -- caller side ------------------------------------------------------------------------

    def submit(self, update: CaptionUpdate) -> None:
        """Take the words an update committed; returns at once."""
        with self._lock:
            for word in update.committed:
                marks, bare = closing_marks(word.text)
                if marks:
                    # The marks close the word before: on it, they may end its phrase; after
                    # a pause sent that phrase, a caption line must not open with them.
                    if self._pending:
                        last = self._pending[-1]
                        self._pending[-1] = replace(last, text=last.text + marks)
                        if ends_sentence(marks):
                            self._enqueue_pending()
                    if not bare.strip():
                        continue
                    word = replace(word, text=bare)
                if not self._pending:
                    self._pending_since = time.monotonic()
                self._pending.append(word)
                if ends_sentence(word.text) or len(self._pending) >= MAX_PHRASE_WORDS:
                    self._enqueue_pending()
            if update.final:
                self._enqueue_pending()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending (within `timeout`), then stop."""
        with self._lock:
            self._enqueue_pending()
        self._deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._phrases.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _enqueue_pending(self) -> None:
        text = join_words(self._pending)
        self._pending = []
        if not text:
            return
        phrase = Phrase(text, datetime.now(UTC))
        while True:
            try:
                self._phrases.put_nowait(phrase)
                return
            except queue.Full:
                try:
                    self._phrases.get_nowait()
                    self.stats.dropped += 1
                    logger.warning("%s endpoint is behind: oldest caption dropped", self.service)
                except queue.Empty:
                    pass

    # -- sender thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                phrase = self._phrases.get(timeout=0.25)
            except queue.Empty:
                self._flush_after_pause()
                continue
            if phrase is None:
                return
            self._send(phrase)

    def _flush_after_pause(self) -> None:
        with self._lock:
            if self._pending and time.monotonic() - self._pending_since >= PHRASE_PAUSE_S:
                self._enqueue_pending()

    def _send(self, phrase: Phrase) -> None:
        backoff = FIRST_BACKOFF_S
        for attempt in range(RETRIES + 1):
            status, reason = self._post(phrase)
            if status is not None and 200 <= status < 300:
                self.stats.sent += 1
                self.seq += 1
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt == RETRIES:
                break
            self.stats.retries += 1
            logger.warning(
                "%s caption seq %d failed (%s); retrying in %.1f s",
                self.service,
                self.seq,
                reason,
                backoff,
            )
            if time.monotonic() + backoff > self._deadline:
                break
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        self.stats.failed += 1
        self.seq += 1
        logger.error("%s caption seq %d not delivered (%s)", self.service, self.seq - 1, reason)

    def _post(self, phrase: Phrase) -> tuple[int | None, str]:
        request = urllib.request.Request(
            self._url_for(self.seq),
            data=self.body(phrase).encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, "ok"
        except urllib.error.HTTPError as error:
            return error.code, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return None, str(getattr(error, "reason", error))

    def _url_for(self, seq: int) -> str:
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k not in ("seq", "lang")]
        query += self.query(seq)
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def query(self, seq: int) -> list[tuple[str, str]]:
        return [("seq", str(seq)), ("lang", self.lang)]

    def body(self, phrase: Phrase) -> str:
        return phrase.text


class ZoomCaptionSender(CaptionSender):
    """Zoom meeting closed captions through the API token URL of the meeting's CC menu."""

    service = "Zoom"


class YouTubeCaptionSender(CaptionSender):
    """YouTube Live captions through the stream's HTTP caption ingestion URL."""

    service = "YouTube"

    def query(self, seq: int) -> list[tuple[str, str]]:
        return [("seq", str(seq))]

    def body(self, phrase: Phrase) -> str:
        stamp = phrase.at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{phrase.at.microsecond // 1000:03d}"
        return f"{stamp}\n{phrase.text}\n"
