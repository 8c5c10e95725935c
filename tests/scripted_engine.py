"""A scripted Engine for testing the streaming policy without a model.

Each recording comes with a script: the words said in it, on its audio timeline. The engine
finds where a window's audio sits in its recording (the stream buffer is an exact slice of
what was fed), asks the script what is heard between the window's start and end, and answers
with those words relative to the window, as a real engine would. Every decoded window is kept
in `decoded`, so tests can check what the policy asked for (prompts, steps, batches).

It lives with the tests, not in `bot/`: nothing in the product needs an engine that knows the
answer in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.asr.engine import EngineInfo, Hypothesis, OfflineResult, Task, Window
from bot.messages import SAMPLE_RATE, Word
from bot.text import ends_sentence

Hearing = Callable[[float, float, int], list[Word]]
"""What the script hears in [start, end) of its recording on its `n`-th decode (from 0)."""


def spoken(text: str, start: float = 0.0, step: float = 0.4, gap: float = 0.1) -> list[Word]:
    """Words said one after the other: each lasts `step - gap` seconds, Whisper-spaced."""
    return [
        Word(" " + w, round(start + i * step, 3), round(start + i * step + step - gap, 3))
        for i, w in enumerate(text.split())
    ]


def fully_heard(words: Sequence[Word]) -> Hearing:
    """The plain script: a window hears every word that lies inside it."""

    def hear(start: float, end: float, _n: int) -> list[Word]:
        return [w for w in words if w.start >= start - 0.05 and w.end <= end]

    return hear


@dataclass
class Script:
    audio: np.ndarray
    hear: Hearing
    calls: int = 0


@dataclass(frozen=True)
class Decoded:
    """One window the engine was asked to decode, placed on its recording's timeline."""

    recording: str
    start: float
    end: float
    window: Window
    batch: int  # which engine call it was part of


@dataclass
class ScriptedEngine:
    """Implements the Engine protocol by reading the answers from scripts."""

    scripts: dict[str, Script]
    language: str = "en"
    info: EngineInfo = field(
        default_factory=lambda: EngineInfo("scripted", "script", "cpu", "none")
    )
    is_multilingual: bool = True
    supported_languages: tuple[str, ...] = ("en", "de", "es", "fr", "pt")
    decoded: list[Decoded] = field(default_factory=list)
    calls: int = 0

    @classmethod
    def of(cls, **recordings: tuple[np.ndarray, Sequence[Word] | Hearing]) -> ScriptedEngine:
        """`ScriptedEngine.of(a=(audio, words))`: one script per recording."""
        return cls(
            {
                name: Script(audio, what if callable(what) else fully_heard(what))
                for name, (audio, what) in recordings.items()
            }
        )

    def check_task(self, task: Task, language: str | None) -> None:
        pass

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        hypotheses = [self._hear(window) for window in windows]
        self.calls += 1
        return hypotheses

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int | None = None
    ) -> OfflineResult:
        name, offset = self._locate(audio)
        script = self.scripts[name]
        words = tuple(script.hear(offset, offset + len(audio) / SAMPLE_RATE, script.calls))
        return OfflineResult(words, "".join(w.text for w in words).strip(), self.language)

    def decoded_from(self, recording: str) -> list[Decoded]:
        return [d for d in self.decoded if d.recording == recording]

    def _hear(self, window: Window) -> Hypothesis:
        name, start = self._locate(window.audio)
        end = start + len(window.audio) / SAMPLE_RATE
        script = self.scripts[name]
        heard = script.hear(start, end, script.calls)
        script.calls += 1
        self.decoded.append(Decoded(name, start, end, window, self.calls))
        words = tuple(
            Word(w.text, max(w.start - start, 0.0), w.end - start, w.probability) for w in heard
        )
        return Hypothesis(
            words=words,
            language=window.language or self.language,
            language_probability=1.0,
            segment_ends=tuple(i for i, w in enumerate(words) if ends_sentence(w.text)),
        )

    def _locate(self, audio: np.ndarray) -> tuple[str, float]:
        """The recording this audio was cut from, and the time it starts at there."""
        sound = np.flatnonzero(audio)
        if len(sound) == 0:
            raise AssertionError("the policy decoded a window of pure digital silence")
        first = int(sound[0])
        for name, script in self.scripts.items():
            for candidate in np.flatnonzero(script.audio == audio[first]):
                offset = int(candidate) - first
                piece = script.audio[offset : offset + len(audio)]
                if offset >= 0 and len(piece) == len(audio) and np.array_equal(piece, audio):
                    return name, offset / SAMPLE_RATE
        raise AssertionError("a window holds audio that no script was given")
