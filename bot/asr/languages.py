"""Whisper's language codes and the task/language check every engine makes before decoding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.asr.engine import Window

TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class LanguageSupport:
    """What a loaded model can be asked: the check every engine makes before decoding."""

    model: str
    multilingual: bool
    supported: tuple[str, ...]

    def check(self, task: str, language: str | None) -> None:
        """Refuse (ConfigError) a task or language the model cannot do."""
        if task not in TASKS:
            raise ConfigError(f"unknown task '{task}': use transcribe or translate")
        if not self.multilingual:
            # An English-only model's output is English already: translate = transcribe.
            if language not in (None, "en"):
                raise ConfigError(
                    f"model '{self.model}' is English-only; language '{language}' "
                    "needs a multilingual model such as --model base"
                )
        elif language is not None and language not in self.supported:
            raise ConfigError(f"unknown language '{language}': use auto or a Whisper code like de")

    def check_windows(self, windows: Iterable[Window]) -> None:
        for window in windows:
            self.check(window.task, window.language)
