"""CTranslate2 engine (faster-whisper's runtime): the CPU default, int8.

Streaming windows are decoded with a *trimmed audio context*: the encoder sees the buffer plus a
short tail of silence instead of the 30 s Whisper pads to. CTranslate2 accepts any frame count,
the encoder cost falls with it (about 0.1 s for 10 s of audio instead of 0.6-0.8 s for 30 s on
2 cores), and the silent tail tells the decoder where speech ends, which keeps it from looping
(measured: without the tail it repeats the last word until the token limit). `min_context_s` (off by
default) pads a short window with more silence (see DecodeOptions).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from bot.asr.decoding import (
    MAX_WINDOW_S,
    Decoded,
    DecodeOptions,
    compression_ratio,
    decode_with_fallback,
    hypothesis,
    prompt_tokens,
)
from bot.asr.engine import EngineInfo, Hypothesis, OfflineResult, Task, Window
from bot.asr.languages import LanguageSupport
from bot.asr.tokens import Tokenizers
from bot.asr.words import window_words, word_timings
from bot.errors import ModelNotAvailableError
from bot.messages import SAMPLE_RATE, Word

logger = logging.getLogger(__name__)

OFFLINE_BEAM_SIZE = 5  # faster-whisper's default: the offline reference


class CTranslate2Engine:
    """Whisper on CTranslate2, decoding batches of windows from several streams at once.

    With `workers` above 1, CTranslate2 holds that many replicas of the model (sharing its
    weights) and a batch is split between them, decoded side by side. A batch of one window
    (a service with one live session, or one whose other sessions are silent) would then run
    on one core: on a CPU it goes to a second copy of the model that runs on every core
    (one more copy of the weights: base int8 about 80 MB).
    """

    def __init__(
        self,
        model_path: Path,
        model_name: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        workers: int = 1,
        options: DecodeOptions | None = None,
    ) -> None:
        model_path = Path(model_path)
        if (
            not (model_path / "model.bin").is_file()
            and (model_path / "model.safetensors").is_file()
        ):
            raise ModelNotAvailableError(
                f"{model_path} is a Hugging Face safetensors checkpoint; the ctranslate2 engine "
                "needs a CTranslate2 model (convert it with ct2-transformers-converter) or use "
                "--engine jax"
            )
        try:
            self._whisper = WhisperModel(
                str(model_path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=max(1, workers),
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ModelNotAvailableError(
                f"cannot load model '{model_name}' from {model_path}: {first_line}"
            ) from error
        self.model_path = model_path
        self.workers = max(1, workers)
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="ct2-worker")
            if self.workers > 1
            else None
        )
        self._model: ctranslate2.models.Whisper = self._whisper.model
        self._whole_model = self._model
        if self.workers > 1 and device == "cpu":
            self._whole_model = ctranslate2.models.Whisper(
                str(model_path),
                device=device,
                compute_type=compute_type,
                intra_threads=self.workers * max(cpu_threads, 1),
            )
        self._features = self._whisper.feature_extractor
        self.options = options or DecodeOptions()
        self.is_multilingual = bool(self._model.is_multilingual)
        self._tokenizers = Tokenizers(self._whisper.hf_tokenizer, self.is_multilingual)
        self.supported_languages = tuple(self._whisper.supported_languages)
        self._language_support = LanguageSupport(
            model_name, self.is_multilingual, self.supported_languages
        )
        self.info = EngineInfo(
            name="ctranslate2",
            model=model_name,
            device=device,
            compute_type=compute_type,
            details={
                "ctranslate2": ctranslate2.__version__,
                "audio_context": self.options.audio_context,
                "min_context_s": f"{self.options.min_context_s:g}",
                "beam_size": str(self.options.beam_size),
                "translate_beam_size": str(self.options.translate_beam_size),
                "cpu_threads": str(cpu_threads),
                "workers": str(self.workers),
                "offline_reference": self._offline_reference(OFFLINE_BEAM_SIZE),
            },
        )

    # -- public interface ---------------------------------------------------------------------

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        if not windows:
            return []
        self._language_support.check_windows(windows)
        if self._pool is None or len(windows) == 1:
            return self._transcribe_part(windows, self._whole_model)
        parts = split_batch([len(w.audio) for w in windows], self.workers)
        decoded = self._pool.map(
            lambda rows: self._transcribe_part([windows[r] for r in rows], self._model), parts
        )
        by_row: dict[int, Hypothesis] = {}
        for rows, hypotheses in zip(parts, decoded):
            by_row.update(zip(rows, hypotheses))
        return [by_row[row] for row in range(len(windows))]

    def _transcribe_part(
        self, windows: list[Window], model: ctranslate2.models.Whisper
    ) -> list[Hypothesis]:
        """One worker's share of a batch, decoded by `model` in one batched call per step."""
        lengths = [len(w.audio) for w in windows]
        encoder_output = self._encode(model, [w.audio for w in windows])
        languages = self._languages(model, encoder_output, windows)
        tokenizers = [
            self._tokenizers.get(w.task, lang) for w, (lang, _) in zip(windows, languages)
        ]
        prompts = self._prompts(tokenizers, windows)
        bare = [list(t.sot_sequence) for t in tokenizers]
        beams = [self.options.beam_for(w.task) for w in windows]
        decoded = decode_with_fallback(
            len(windows),
            self.options,
            lambda rows, temperature, with_prompt: self._generate(
                model,
                encoder_output,
                rows,
                prompts if with_prompt else bare,
                tokenizers,
                lengths,
                temperature,
                beams,
            ),
            prompted=[p != b for p, b in zip(prompts, bare)],
        )
        words_per_row = self._align(model, encoder_output, tokenizers, decoded, lengths)
        return [
            hypothesis(words, segment_ends, language, result, self.options, window.task)
            for window, language, result, (words, segment_ends) in zip(
                windows, languages, decoded, words_per_row
            )
        ]

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int | None = None
    ) -> OfflineResult:
        """faster-whisper's own long-form transcription (beam 5 unless `beam_size` says)."""
        self.check_task(task, language)
        beam_size = beam_size or OFFLINE_BEAM_SIZE
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
        return OfflineResult(
            words=tuple(words),
            text=text,
            language=info.language,
            reference=self._offline_reference(beam_size),
        )

    # -- steps ----------------------------------------------------------------------------------

    def check_task(self, task: Task, language: str | None) -> None:
        """Refuse (ConfigError) a task or language this model cannot do."""
        self._language_support.check(task, language)

    @staticmethod
    def _offline_reference(beam_size: int) -> str:
        return f"faster-whisper transcribe, beam {beam_size}, conditioned on previous text"

    def _encode(
        self, model: ctranslate2.models.Whisper, audios: list[np.ndarray]
    ) -> ctranslate2.StorageView:
        tail = int(self.options.silence_tail_s * SAMPLE_RATE)
        if self.options.audio_context == "full":
            total = int(MAX_WINDOW_S * SAMPLE_RATE)
        else:
            longest = max(
                max(len(a) for a in audios) + tail, int(self.options.min_context_s * SAMPLE_RATE)
            )
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
        return model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True)

    def _languages(
        self,
        model: ctranslate2.models.Whisper,
        encoder_output: ctranslate2.StorageView,
        windows: list[Window],
    ) -> list[tuple[str, float]]:
        if not self.is_multilingual:
            return [("en", 1.0) for _ in windows]
        if all(w.language for w in windows):
            return [(w.language or "en", 1.0) for w in windows]
        detected = model.detect_language(encoder_output)
        result = []
        for window, candidates in zip(windows, detected):
            if window.language:
                result.append((window.language, 1.0))
            else:
                token, probability = candidates[0]
                result.append((token[2:-2], float(probability)))
        return result

    def _prompts(self, tokenizers: list[Tokenizer], windows: list[Window]) -> list[list[int]]:
        """Previous-text prompts; CTranslate2 needs <|startoftranscript|> at one position in a
        batch, so every row keeps as many recent prompt tokens as the shortest row has."""
        previous = [
            prompt_tokens(t, w.prompt, self.options.max_prompt_tokens)
            for t, w in zip(tokenizers, windows)
        ]
        keep = min(len(p) for p in previous)
        if keep == 0:
            return [list(t.sot_sequence) for t in tokenizers]
        return [
            [t.sot_prev] + p[len(p) - keep :] + list(t.sot_sequence)
            for t, p in zip(tokenizers, previous)
        ]

    def _generate(
        self,
        model: ctranslate2.models.Whisper,
        encoder_output: ctranslate2.StorageView,
        rows: list[int],
        prompts: list[list[int]],
        tokenizers: list[Tokenizer],
        lengths: list[int],
        temperature: float,
        beams: list[int],
    ) -> list[Decoded]:
        """The rows decoded at `temperature`: sampled, or at temperature 0 by beam search with
        each row's beam (one generate call per beam size: the beam is per call)."""
        if temperature > 0:
            calls = [
                (rows, {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature})
            ]
        else:
            calls = [
                ([r for r in rows if beams[r] == beam], {"beam_size": beam})
                for beam in sorted({beams[r] for r in rows})
            ]
        by_row: dict[int, Decoded] = {}
        for group, sampling in calls:
            features = (
                encoder_output if len(group) == len(prompts) else _take_rows(encoder_output, group)
            )
            group_prompts = [prompts[r] for r in group]
            longest_audio_s = max(lengths[r] for r in group) / SAMPLE_RATE
            new_tokens = int(longest_audio_s * self.options.max_tokens_per_second) + 12
            max_length = min(448, max(len(p) for p in group_prompts) + new_tokens)
            outputs = model.generate(
                features,
                group_prompts,
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
                max_initial_timestamp_index=50,
                **sampling,
            )
            for row, output in zip(group, outputs):
                tokens = list(output.sequences_ids[0])
                text = tokenizers[row].decode([t for t in tokens if t < tokenizers[row].eot])
                by_row[row] = Decoded(
                    tokens=tokens,
                    avg_logprob=float(output.scores[0]) * len(tokens) / (len(tokens) + 1),
                    compression_ratio=compression_ratio(text),
                    no_speech_probability=float(output.no_speech_prob),
                    temperature=temperature,
                )
        return [by_row[r] for r in rows]

    def _align(
        self,
        model: ctranslate2.models.Whisper,
        encoder_output: ctranslate2.StorageView,
        tokenizers: list[Tokenizer],
        decoded: list[Decoded],
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
            alignments = model.align(
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
        pairs = np.array(alignment.alignments, dtype=np.int64).reshape(-1, 2)
        text_indices, time_indices = pairs[:, 0], pairs[:, 1]
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        token_starts_s = time_indices[jumps] / self._whisper.tokens_per_second
        timings = word_timings(tokenizer, text_tokens, token_starts_s, alignment.text_token_probs)
        return window_words(timings, duration_s, _segment_token_ends(all_tokens, tokenizer))


def split_batch(lengths: list[int], parts: int) -> list[list[int]]:
    """Rows of a batch in at most `parts` groups of near-equal count, windows of similar length
    together (a batch is encoded at its longest window's length)."""
    order = sorted(range(len(lengths)), key=lambda r: lengths[r])
    count = min(parts, len(order))
    if count <= 1:
        return [order]
    size, extra = divmod(len(order), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(order[start:end])
        start = end
    return groups


def _take_rows(storage: ctranslate2.StorageView, rows: list[int]) -> ctranslate2.StorageView:
    array = np.asarray(storage)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))


def _segment_token_ends(tokens: list[int], tokenizer: Tokenizer) -> frozenset[int]:
    """Counts of text tokens after which a timestamp token closed a segment."""
    ends = set()
    count = 0
    for token in tokens:
        if token < tokenizer.eot:
            count += 1
        elif token >= tokenizer.timestamp_begin and count > 0:
            ends.add(count)
    return frozenset(ends)
