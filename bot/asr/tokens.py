"""Whisper tokenizers per task and language, over the model's Hugging Face `tokenizer.json`."""

from __future__ import annotations

from faster_whisper.tokenizer import Tokenizer
from tokenizers import Tokenizer as HFTokenizer


class Tokenizers:
    """One faster-whisper Tokenizer per (task, language), made on first use.

    An English-only model's tokenizer has no task or language tokens, so it ignores both.
    """

    def __init__(self, hf_tokenizer: HFTokenizer, multilingual: bool) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.multilingual = multilingual
        self._made: dict[tuple[str, str], Tokenizer] = {}

    def get(self, task: str, language: str) -> Tokenizer:
        key = (task, language)
        if key not in self._made:
            self._made[key] = Tokenizer(
                self.hf_tokenizer,
                self.multilingual,
                task=task if self.multilingual else None,
                language=language if self.multilingual else None,
            )
        return self._made[key]

    def language_token(self, code: str) -> int | None:
        return self.hf_tokenizer.token_to_id(f"<|{code}|>")
