"""Messages that flow one way through the pipeline: audio → ASR → captions → outputs.

Only these small frozen dataclasses cross a queue between threads or processes.
Times are seconds: `start`/`end` on the stream's audio timeline, `*_s` on the stream clock
(seconds since the stream started, as a live viewer experiences it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
# The audio one Whisper window holds (seconds).
WHISPER_WINDOW_S = 30.0
# Least encoder context of a streaming window (silence after a short one); see DecodeOptions.
# engine.min_context_s "auto" takes the model's measured value (bot.asr.factory), else this.
MIN_CONTEXT_S = 0.0


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples at 16 kHz; `start` is the audio time of the first sample.

    `speaker` is the display name of the meeting participant the stream is (when known)."""

    stream_id: str
    samples: np.ndarray
    start: float
    speaker: str | None = None


@dataclass(frozen=True)
class EndOfStream:
    """No more audio will come for this stream: finalize what is pending."""

    stream_id: str


@dataclass(frozen=True)
class Word:
    """A recognized word. `text` keeps Whisper's leading space (absent for languages without)."""

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class CommittedWord:
    """A word that will never change again, with when the viewer first saw it and when it froze."""

    text: str
    start: float
    end: float
    probability: float
    first_seen_s: float
    emitted_s: float


@dataclass(frozen=True)
class CaptionUpdate:
    """One change of the caption state of a stream.

    `committed` holds only the words committed by this update (append-only); `tentative` is the
    whole tentative tail shown after all committed text. `final` marks the last update of a stream.
    `speaker` is the display name of the participant speaking on the stream (when known).
    """

    stream_id: str
    t_s: float
    committed: tuple[CommittedWord, ...]
    tentative: tuple[Word, ...]
    language: str | None = None
    final: bool = False
    speaker: str | None = None


def join_words(words: tuple[Word, ...] | list[Word] | tuple[CommittedWord, ...]) -> str:
    """Caption text of a word sequence (Whisper words carry their own leading spaces)."""
    return "".join(w.text for w in words).strip()


@dataclass(frozen=True)
class CaptionsDrawn:
    """The compositor sent the first frame showing a new caption state of a stream.

    `wall_time` is `time.time()` when that frame went to the sinks; the counts say how much of
    the stream's text the frame showed (for end-to-end latency: audio heard → caption visible).
    """

    stream_id: str
    wall_time: float
    committed_words: int
    tentative_words: int


@dataclass(frozen=True)
class StageReport:
    """Periodic health of one process of the bot: counters since it started.

    `stage` is "capture", "asr" or "compositor"; counters are e.g. chunks, dropped_chunks,
    reopens (capture), frames, dropped_frames, ms_per_frame (compositor).
    """

    stage: str
    wall_time: float
    counters: dict[str, float]


@dataclass(frozen=True)
class StageError:
    """A process of the bot stopped on an error the user must fix (one line, says what to do)."""

    stage: str
    message: str


@dataclass(frozen=True)
class MeetingEvent:
    """What the browser process of `captionbot join` saw in the meeting.

    `kind`: "waiting" (in a lobby), "joined", "left" (the bot left: alone, meeting ended, asked
    to stop; `message` says why) or "failed" (one line for the user; `exit_code` for the CLI).
    """

    kind: str
    message: str = ""
    exit_code: int = 0
