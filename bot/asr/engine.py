"""The interface every ASR engine implements, shaped for batches of windows from many streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from bot.messages import Word

Task = Literal["transcribe", "translate"]
# The product's default: captions in English, whatever is spoken (English is transcribed).
DEFAULT_TASK: Task = "translate"


@dataclass(frozen=True)
class Window:
    """One stream's audio buffer to decode, with what the stream knows so far.

    `language` None asks the engine to detect it. `prompt` is the stream's recent committed
    text (conditioning on previous text, as Whisper does across 30 s windows).
    """

    audio: np.ndarray
    task: Task = DEFAULT_TASK
    language: str | None = None
    prompt: str = ""


@dataclass(frozen=True)
class Hypothesis:
    """What the engine heard in one window. Word times are relative to the window start.

    `segment_ends` are the indices of words after which Whisper closed a segment (a timestamp
    pair), which the streaming policy uses as safe places to cut its buffer.
    """

    words: tuple[Word, ...]
    language: str
    language_probability: float
    segment_ends: tuple[int, ...] = ()
    no_speech_probability: float = 0.0
    avg_logprob: float = 0.0
    temperature: float = 0.0


@dataclass(frozen=True)
class OfflineResult:
    """Whole-file transcription (the reference the streaming system is compared against).

    `reference` says how it was decoded, which differs per engine (e.g. faster-whisper's beam
    search against greedy windows), so a comparison can name what it compared against.
    """

    words: tuple[Word, ...]
    text: str
    language: str
    reference: str = ""


@dataclass(frozen=True)
class EngineInfo:
    """What runs: engine, model, device, number format; `reason` says why it was chosen."""

    name: str
    model: str
    device: str
    compute_type: str
    details: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.name} on {self.device}, {self.compute_type}, model {self.model}{why}"


class Engine(Protocol):
    """Decodes batches of windows; one engine serves every stream of a worker."""

    info: EngineInfo
    is_multilingual: bool
    supported_languages: tuple[str, ...]

    def check_task(self, task: Task, language: str | None) -> None:
        """Raise ConfigError if this model cannot do the task in the language (e.g. an
        English-only model asked to translate)."""
        ...

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        """Decode windows (from any number of streams) in one batched call, in order."""
        ...

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int | None = None
    ) -> OfflineResult:
        """Transcribe a whole recording the engine's standard way (no streaming), for
        comparison; `beam_size` None is that standard (see `OfflineResult.reference`)."""
        ...
