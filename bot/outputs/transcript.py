"""A stream's transcript: its committed words and every caption state a viewer saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.messages import CaptionUpdate, CommittedWord, join_words


@dataclass(frozen=True)
class CaptionState:
    """Captions as shown at stream-clock time `t_s`: all committed text, then the tentative tail."""

    t_s: float
    committed: str
    tentative: str


@dataclass
class Transcript:
    """Everything written about one stream. `extra` holds free metadata (e.g. timing stats)."""

    stream_id: str
    audio: str
    duration_s: float
    model: str
    engine: str
    task: str
    language: str | None = None
    speaker: str | None = None
    """The participant's display name, for a joined meeting's per-participant streams."""
    words: list[CommittedWord] = field(default_factory=list)
    updates: list[CaptionState] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The final committed text."""
        return join_words(self.words)


class _RunningText:
    """`join_words` of a growing word list, extended per word instead of rejoined.

    Keeps the stripped text and the whitespace that trails it (which only counts once more
    text follows), so appending costs the new words, not the whole transcript.
    """

    def __init__(self) -> None:
        self.text = ""
        self._trailing = ""

    def extend(self, words: tuple[CommittedWord, ...]) -> None:
        raw = "".join(w.text for w in words)
        body = raw.rstrip()
        if not body:
            self._trailing += raw
            return
        if self.text:
            self.text = self.text + self._trailing + body
        else:
            self.text = body.lstrip()
        self._trailing = raw[len(body) :]


class TranscriptRecorder:
    """Builds a `Transcript` from one stream's `CaptionUpdate`s, in the order they were sent.

    Caption states are recorded only when what a viewer sees changes; updates that repeat the
    last visible state are skipped. Unchanged committed text is shared between states, not copied.
    """

    def __init__(
        self,
        stream_id: str,
        audio: str,
        duration_s: float,
        model: str,
        engine: str,
        task: str,
        language: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._transcript = Transcript(
            stream_id=stream_id,
            audio=audio,
            duration_s=duration_s,
            model=model,
            engine=engine,
            task=task,
            language=language,
            extra=dict(extra or {}),
        )
        self._committed = _RunningText()
        self._last_visible = ("", "")

    @property
    def transcript(self) -> Transcript:
        """The transcript recorded so far (live: later updates keep extending it)."""
        return self._transcript

    def add(self, update: CaptionUpdate) -> None:
        """Record one update: append its committed words and, if the view changed, its state."""
        t = self._transcript
        if update.stream_id != t.stream_id:
            raise ValueError(
                f"update for stream {update.stream_id!r} given to the recorder of {t.stream_id!r}"
            )
        if update.committed:
            t.words.extend(update.committed)
            self._committed.extend(update.committed)
        if update.language:
            t.language = update.language
        visible = (self._committed.text, join_words(update.tentative))
        if visible == self._last_visible:
            return
        self._last_visible = visible
        t.updates.append(CaptionState(t_s=update.t_s, committed=visible[0], tentative=visible[1]))
