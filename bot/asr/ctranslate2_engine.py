"""CTranslate2 engine (faster-whisper's runtime): the CPU default, int8.

Streaming windows are decoded with a *trimmed audio context*: the encoder sees the buffer plus a
short tail of silence instead of the 30 s Whisper pads to. CTranslate2 accepts any frame count,
the encoder cost falls with it (about 0.1 s for 10 s of audio instead of 0.6-0.8 s for 30 s on
2 cores), and the silent tail tells the decoder where speech ends, which keeps it from looping
(measured: without the tail it repeats the last word until the token limit).
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from bot.asr.engine import EngineInfo, Hypothesis, OfflineResult, Task, Window
from bot.errors import ConfigError, ModelNotAvailableError
from bot.messages import SAMPLE_RATE, Word

logger = logging.getLogger(__name__)

MAX_WINDOW_S = 30.0
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class DecodeOptions:
    """How streaming windows are decoded (offline decoding uses faster-whisper's defaults)."""

    beam_size: int = 1
    temperatures: tuple[float, ...] = (0.0, 0.4, 0.8)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    max_prompt_tokens: int = 64
    audio_context: Literal["trimmed", "full"] = "trimmed"
    silence_tail_s: float = 1.0
    max_tokens_per_second: float = 8.0


@dataclass
class _Decoded:
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_probability: float
    temperature: float


class CTranslate2Engine:
    """Whisper on CTranslate2, decoding batches of windows from several streams at once."""

    def __init__(
        self,
        model_path: Path,
        model_name: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        options: DecodeOptions | None = None,
    ) -> None:
        try:
            self._whisper = WhisperModel(
                str(model_path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ModelNotAvailableError(
                f"cannot load model '{model_name}' from {model_path}: {first_line}"
            ) from error
        self.model_path = Path(model_path)
        self._model: ctranslate2.models.Whisper = self._whisper.model
        self._features = self._whisper.feature_extractor
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self.options = options or DecodeOptions()
        self.is_multilingual = bool(self._model.is_multilingual)
        self.supported_languages = tuple(self._whisper.supported_languages)
        self.info = EngineInfo(
            name="ctranslate2",
            model=model_name,
            device=device,
            compute_type=compute_type,
            details={
                "ctranslate2": ctranslate2.__version__,
                "audio_context": self.options.audio_context,
                "beam_size": str(self.options.beam_size),
                "cpu_threads": str(cpu_threads),
            },
        )

    # -- public interface ---------------------------------------------------------------------

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        if not windows:
            return []
        for window in windows:
            self.check_task(window.task, window.language)
        lengths = [len(w.audio) for w in windows]
        encoder_output = self._encode([w.audio for w in windows])
        languages = self._languages(encoder_output, windows)
        tokenizers = [self._tokenizer(w.task, lang) for w, (lang, _) in zip(windows, languages)]
        decoded = self._decode_with_fallback(encoder_output, windows, tokenizers, lengths)
        words_per_row = self._align(encoder_output, tokenizers, decoded, lengths)
        hypotheses = []
        for row, (lang, lang_prob) in enumerate(languages):
            words, segment_ends = words_per_row[row]
            result = decoded[row]
            if self._is_silence(result):
                words, segment_ends = (), ()
            elif self._needs_fallback(result):
                words, segment_ends = _collapse_repetitions(words), ()
            else:
                collapsed = _collapse_repetitions(words, times=2, min_words=3)
                if len(collapsed) < len(words):
                    words, segment_ends = collapsed, ()
            hypotheses.append(
                Hypothesis(
                    words=words,
                    language=lang,
                    language_probability=lang_prob,
                    segment_ends=segment_ends,
                    no_speech_probability=result.no_speech_probability,
                    avg_logprob=result.avg_logprob,
                    temperature=result.temperature,
                )
            )
        return hypotheses

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int = 5
    ) -> OfflineResult:
        self.check_task(task, language)
        segments, info = self._whisper.transcribe(
            audio,
            task=task,
            language=language if self.is_multilingual else "en",
            beam_size=beam_size,
            word_timestamps=True,
            condition_on_previous_text=True,
        )
        words: list[Word] = []
        for segment in segments:
            for w in segment.words or []:
                words.append(Word(w.word, float(w.start), float(w.end), float(w.probability)))
        text = "".join(w.text for w in words).strip()
        return OfflineResult(words=tuple(words), text=text, language=info.language)

    # -- steps ----------------------------------------------------------------------------------

    def check_task(self, task: str, language: str | None) -> None:
        """Refuse (ConfigError) a task or language this model cannot do."""
        if task not in ("transcribe", "translate"):
            raise ConfigError(f"unknown task '{task}': use transcribe or translate")
        if not self.is_multilingual:
            # An English-only model's output is English already: translate = transcribe.
            if language not in (None, "en"):
                raise ConfigError(
                    f"model '{self.info.model}' is English-only; language '{language}' "
                    "needs a multilingual model such as --model base"
                )
        elif language is not None and language not in self.supported_languages:
            raise ConfigError(f"unknown language '{language}': use auto or a Whisper code like de")

    def _encode(self, audios: list[np.ndarray]) -> ctranslate2.StorageView:
        tail = int(self.options.silence_tail_s * SAMPLE_RATE)
        if self.options.audio_context == "full":
            total = int(MAX_WINDOW_S * SAMPLE_RATE)
        else:
            longest = max(len(a) for a in audios) + tail
            # Whole half-seconds: windows that differ by a few samples share a shape.
            half_second = SAMPLE_RATE // 2
            total = min(
                math.ceil(longest / half_second) * half_second, int(MAX_WINDOW_S * SAMPLE_RATE)
            )
        batch = []
        for audio in audios:
            clipped = audio[: total - tail] if len(audio) > total - tail else audio
            padded = np.zeros(total, dtype=np.float32)
            padded[: len(clipped)] = clipped
            batch.append(self._features(padded, padding=0)[:, : total // self._features.hop_length])
        features = np.ascontiguousarray(np.stack(batch), dtype=np.float32)
        return self._model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True)

    def _languages(
        self, encoder_output: ctranslate2.StorageView, windows: list[Window]
    ) -> list[tuple[str, float]]:
        if not self.is_multilingual:
            return [("en", 1.0) for _ in windows]
        if all(w.language for w in windows):
            return [(w.language or "en", 1.0) for w in windows]
        detected = self._model.detect_language(encoder_output)
        result = []
        for window, candidates in zip(windows, detected):
            if window.language:
                result.append((window.language, 1.0))
            else:
                token, probability = candidates[0]
                result.append((token[2:-2], float(probability)))
        return result

    def _tokenizer(self, task: str, language: str) -> Tokenizer:
        key = (task, language)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self._whisper.hf_tokenizer,
                self.is_multilingual,
                task=task if self.is_multilingual else None,
                language=language if self.is_multilingual else None,
            )
        return self._tokenizers[key]

    def _prompts(self, tokenizers: list[Tokenizer], windows: list[Window]) -> list[list[int]]:
        """Previous-text prompts; CTranslate2 needs <|startoftranscript|> at one position in a
        batch, so every row keeps as many recent prompt tokens as the shortest row has."""
        previous = [
            t.encode(" " + w.prompt.strip())[-self.options.max_prompt_tokens :]
            if w.prompt.strip()
            else []
            for t, w in zip(tokenizers, windows)
        ]
        keep = min(len(p) for p in previous)
        if keep == 0:
            return [list(t.sot_sequence) for t in tokenizers]
        return [
            [t.sot_prev] + p[len(p) - keep :] + list(t.sot_sequence)
            for t, p in zip(tokenizers, previous)
        ]

    def _decode_with_fallback(
        self,
        encoder_output: ctranslate2.StorageView,
        windows: list[Window],
        tokenizers: list[Tokenizer],
        lengths: list[int],
    ) -> list[_Decoded]:
        prompts = self._prompts(tokenizers, windows)
        results: list[_Decoded | None] = [None] * len(windows)
        pending = list(range(len(windows)))
        for temperature in self.options.temperatures:
            rows = self._generate(
                encoder_output, pending, prompts, tokenizers, lengths, temperature
            )
            still_failing = []
            for row, decoded in zip(pending, rows):
                best = results[row]
                if best is None or decoded.avg_logprob > best.avg_logprob:
                    results[row] = decoded
                if self._needs_fallback(decoded):
                    still_failing.append(row)
            if not still_failing:
                break
            logger.debug("temperature fallback for %d window(s)", len(still_failing))
            pending = still_failing
        return [r for r in results if r is not None]

    def _generate(
        self,
        encoder_output: ctranslate2.StorageView,
        rows: list[int],
        prompts: list[list[int]],
        tokenizers: list[Tokenizer],
        lengths: list[int],
        temperature: float,
    ) -> list[_Decoded]:
        features = encoder_output if len(rows) == len(prompts) else _take_rows(encoder_output, rows)
        row_prompts = [prompts[r] for r in rows]
        longest_audio_s = max(lengths[r] for r in rows) / SAMPLE_RATE
        new_tokens = int(longest_audio_s * self.options.max_tokens_per_second) + 12
        max_length = min(448, max(len(p) for p in row_prompts) + new_tokens)
        sampling = (
            {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
            if temperature > 0
            else {"beam_size": self.options.beam_size}
        )
        outputs = self._model.generate(
            features,
            row_prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_initial_timestamp_index=50,
            **sampling,
        )
        decoded = []
        for row, output in zip(rows, outputs):
            tokens = list(output.sequences_ids[0])
            text = tokenizers[row].decode([t for t in tokens if t < tokenizers[row].eot])
            decoded.append(
                _Decoded(
                    tokens=tokens,
                    avg_logprob=float(output.scores[0]) * len(tokens) / (len(tokens) + 1),
                    compression_ratio=_compression_ratio(text),
                    no_speech_probability=float(output.no_speech_prob),
                    temperature=temperature,
                )
            )
        return decoded

    def _needs_fallback(self, decoded: _Decoded) -> bool:
        if self._is_silence(decoded):
            return False
        return (
            decoded.compression_ratio > self.options.compression_ratio_threshold
            or decoded.avg_logprob < self.options.log_prob_threshold
        )

    def _is_silence(self, decoded: _Decoded) -> bool:
        return (
            decoded.no_speech_probability > self.options.no_speech_threshold
            and decoded.avg_logprob < self.options.log_prob_threshold
        )

    def _align(
        self,
        encoder_output: ctranslate2.StorageView,
        tokenizers: list[Tokenizer],
        decoded: list[_Decoded],
        lengths: list[int],
    ) -> list[tuple[tuple[Word, ...], tuple[int, ...]]]:
        """Word times from cross-attention alignment, one `align` call per task/language group."""
        out: list[tuple[tuple[Word, ...], tuple[int, ...]]] = [((), ())] * len(decoded)
        groups: dict[tuple[int, ...], list[int]] = {}
        for row, result in enumerate(decoded):
            if any(t < tokenizers[row].eot for t in result.tokens):
                groups.setdefault(tuple(tokenizers[row].sot_sequence), []).append(row)
        hop = self._features.hop_length
        for sot_sequence, rows in groups.items():
            tokenizer = tokenizers[rows[0]]
            text_tokens = [[t for t in decoded[r].tokens if t < tokenizer.eot] for r in rows]
            num_frames = [lengths[r] // hop for r in rows]
            features = (
                encoder_output if len(rows) == len(decoded) else _take_rows(encoder_output, rows)
            )
            alignments = self._model.align(
                features, list(sot_sequence), text_tokens, num_frames, median_filter_width=7
            )
            for row, tokens, alignment in zip(rows, text_tokens, alignments):
                out[row] = self._words_from_alignment(
                    tokenizer, decoded[row].tokens, tokens, alignment, lengths[row] / SAMPLE_RATE
                )
        return out

    def _words_from_alignment(
        self,
        tokenizer: Tokenizer,
        all_tokens: list[int],
        text_tokens: list[int],
        alignment: ctranslate2.models.WhisperAlignmentResult,
        duration_s: float,
    ) -> tuple[tuple[Word, ...], tuple[int, ...]]:
        words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
        if len(word_tokens) <= 1:
            return (), ()
        text_indices = np.array([pair[0] for pair in alignment.alignments])
        time_indices = np.array([pair[1] for pair in alignment.alignments])
        if len(text_indices) == 0:
            return (), ()
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] / self._whisper.tokens_per_second
        if len(jump_times) < len(boundaries):
            jump_times = np.pad(jump_times, (0, len(boundaries) - len(jump_times)), mode="edge")
        starts = jump_times[boundaries[:-1]]
        ends = jump_times[boundaries[1:]]
        probs = alignment.text_token_probs
        raw = [
            [
                word,
                list(tokens),
                float(start),
                float(end),
                float(np.mean(probs[i:j]) if j > i else 0),
            ]
            for word, tokens, start, end, i, j in zip(
                words[:-1], word_tokens[:-1], starts, ends, boundaries[:-1], boundaries[1:]
            )
        ]
        raw = _merge_punctuation(raw)
        segment_token_ends = _segment_token_ends(all_tokens, tokenizer)
        result: list[Word] = []
        segment_ends: list[int] = []
        token_count = 0
        limit = duration_s - 0.05
        for text, tokens, start, end, probability in raw:
            token_count += len(tokens)
            if not text.strip():
                continue
            if start >= limit:
                break  # decoded from the silent tail: not speech
            result.append(Word(text, round(start, 3), round(min(end, duration_s), 3), probability))
            if token_count in segment_token_ends:
                segment_ends.append(len(result) - 1)
        _clamp_long_words(result)
        return tuple(result), tuple(segment_ends)


def _collapse_repetitions(
    words: tuple[Word, ...], times: int = 3, min_words: int = 1
) -> tuple[Word, ...]:
    """Keep one copy of a phrase of `min_words`+ words repeated `times`+ times in a row.

    Whisper loops on short or ending windows ("And so my fellow Americans. And so my fellow
    Americans."); people do repeat a word or two, hardly ever a whole phrase back to back.
    """
    keys = [w.text.strip(" ,.!?").casefold() for w in words]
    kept: list[int] = []
    i = 0
    while i < len(words):
        for n in range(max(min_words, 1), 9):
            if i + n * times > len(keys):
                kept.append(i)
                i += 1
                break
            run = 1
            while keys[i + run * n : i + (run + 1) * n] == keys[i : i + n]:
                run += 1
            if run >= times:
                kept.extend(range(i, i + n))
                i += run * n
                break
        else:
            kept.append(i)
            i += 1
    return tuple(words[k] for k in kept)


def _take_rows(storage: ctranslate2.StorageView, rows: list[int]) -> ctranslate2.StorageView:
    array = np.asarray(storage)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _segment_token_ends(tokens: list[int], tokenizer: Tokenizer) -> set[int]:
    """Counts of text tokens after which a timestamp token closed a segment."""
    ends = set()
    count = 0
    for token in tokens:
        if token < tokenizer.eot:
            count += 1
        elif token >= tokenizer.timestamp_begin and count > 0:
            ends.add(count)
    return ends


def _merge_punctuation(raw: list[list]) -> list[list]:
    """Attach lone punctuation to its neighbour word, as openai/whisper's timing does.

    Items are `[text, tokens, start, end, probability]`; tokens move with the text so that
    token counts (used for segment ends) stay right.
    """
    items = [list(item) for item in raw]
    following = len(items) - 1
    for i in range(len(items) - 2, -1, -1):
        text = items[i][0]
        if text.startswith(" ") and _only(text.strip(), PREPEND_PUNCTUATION):
            target = items[following]
            target[0] = text + target[0]
            target[1] = items[i][1] + target[1]
            target[2] = items[i][2]
            items[i][0], items[i][1] = "", []
        else:
            following = i
    previous = 0
    for j in range(1, len(items)):
        text = items[j][0]
        if (
            items[previous][0]
            and not items[previous][0].endswith(" ")
            and _only(text, APPEND_PUNCTUATION)
        ):
            items[previous][0] += text
            items[previous][1] += items[j][1]
            items[j][0], items[j][1] = "", []
        else:
            previous = j
    return items


def _only(text: str, characters: str) -> bool:
    return bool(text) and all(c in characters for c in text)


def _clamp_long_words(words: list[Word]) -> None:
    """Cap implausibly long words (alignment smears them over pauses), like faster-whisper."""
    durations = [w.end - w.start for w in words if w.end > w.start]
    if not durations:
        return
    max_duration = min(0.7, float(np.median(durations))) * 2
    for i, word in enumerate(words):
        if word.end - word.start > max_duration:
            if word.text.strip()[-1:] in ".。!！?？" or i == len(words) - 1:
                words[i] = Word(word.text, word.start, word.start + max_duration, word.probability)
            elif i == 0:
                words[i] = Word(word.text, word.end - max_duration, word.end, word.probability)
