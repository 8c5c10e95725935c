"""Whisper's language codes and the task/language check every engine makes before decoding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.asr.engine import Window

# The languages of Whisper's tokenizer, in token order (openai/whisper tokenizer.py; "yue" came
# with large-v3). A model supports those its vocabulary has a <|code|> token for.
LANGUAGE_CODES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)  # fmt: skip
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
