"""The JAX Whisper engine: the Engine interface of the streaming core, batched across streams.

Each window is encoded at its own audio bucket (its length plus the silent tail, rounded up to a
few fixed lengths) and the language is detected in the same program. The windows of a call are
then decoded together: their cross-attention keys/values padded to a shared context with a
mask, prompts left-padded, and the whole greedy token loop run on the device in one program per
(batch size, context), rows finishing at their own time. Robustness as openai/whisper's
transcribe: suppressed tokens, temperature fallback on repetitive or improbable text, no-speech
probability. Word times come from the alignment heads' cross-attention recorded while
generating, and DTW. Windows are decoded without timestamp tokens, so segment ends are not
reported (the streaming policy cuts at sentence ends).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer
from tokenizers import Tokenizer as HFTokenizer

from bot.asr.ctranslate2_engine import (
    DecodeOptions,
    _clamp_long_words,
    _collapse_repetitions,
    _compression_ratio,
    _merge_punctuation,
)
from bot.asr.engine import EngineInfo, Hypothesis, OfflineResult, Task, Window
from bot.asr.jax import model as whisper
from bot.asr.jax.timing import TOKENS_PER_SECOND, token_frames
from bot.asr.jax.weights import alignment_heads, load_weights
from bot.errors import ConfigError, ModelNotAvailableError
from bot.messages import SAMPLE_RATE, Word

logger = logging.getLogger(__name__)

COMPUTE_TYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# A window is encoded at the first bucket that holds it and its silent tail (one compiled
# encoder per bucket, about 1 s to compile) and decoded against the longest bucket of its batch,
# the frames past its own masked (one compiled decoder per bucket and batch size, about 2 s).
# Encoders every 2 s with decoder contexts of 10/20/30 s were measured against these: no faster
# per window (the encoder saved about what the longer decoder context cost) and less accurate
# over 43 English items (captionbot eval, fast: WER 4.28% vs 3.58%, one short item looping on
# its thinner silent tail).
AUDIO_BUCKETS_S = (5.0, 10.0, 15.0, 20.0, 30.0)
# What a streaming buffer needs (its cap is 15 s, passed by up to a step, plus the tail):
# compiled by warm_up() at start.
STREAMING_BUCKETS_S = AUDIO_BUCKETS_S[:4]
# The prompt slots of the decoder: the start sequence and at most MAX_PROMPT_TOKENS of text.
MAX_PROMPT_TOKENS = 64
PREFILL_WIDTH = 72
# Offline windows keep the words that end this far before the window's end (the rest are heard
# again, whole, by the next window), and move on by at least OFFLINE_MIN_ADVANCE_S.
OFFLINE_MARGIN_S = 1.5
OFFLINE_MIN_ADVANCE_S = 10.0


def enable_compilation_cache(folder: Path | None = None) -> Path:
    """Keep compiled XLA programs on disk: the second start does not recompile."""
    folder = folder or Path(
        os.environ.get("CAPTIONBOT_JAX_CACHE", Path.home() / ".cache" / "captionbot" / "jax")
    )
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


@dataclass
class _Decoded:
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_probability: float
    temperature: float
    token_probabilities: np.ndarray  # [tokens]
    attention: np.ndarray  # [alignment heads, 1 + tokens, frames]


@dataclass
class _Batch:
    """The windows of one call, encoded and padded to a shared audio context."""

    rows: list[whisper.LayerKV]  # per window: cross-attention keys/values [1, H, T, Dh]
    audio_mask: np.ndarray  # [B, T]
    frames: list[int]  # audio frames of each row's own bucket
    languages: list[tuple[str, float]]
    context_s: float  # the shared context


class JaxEngine:
    """Whisper in JAX on the device jax sees (float32 on CPU, bfloat16 on GPU by default)."""

    def __init__(
        self,
        model_path: Path,
        model_name: str,
        options: DecodeOptions | None = None,
        compute_type: str | None = None,
    ) -> None:
        """`compute_type` float32, bfloat16 or float16; None picks bfloat16 on a GPU and float32
        on CPU (where XLA's bfloat16 matrix-vector products are slower than float32)."""
        self.model_path = Path(model_path)
        self.options = options or DecodeOptions()
        gpu = has_gpu()
        compute_type = compute_type or ("bfloat16" if gpu else "float32")
        if compute_type not in COMPUTE_TYPES:
            raise ConfigError(
                f"compute type '{compute_type}' is not one the jax engine runs: "
                f"use {', '.join(COMPUTE_TYPES)}"
            )
        self.dtype = COMPUTE_TYPES[compute_type]
        enable_compilation_cache()
        started = time.perf_counter()
        weights, self.dims = load_weights(self.model_path)
        self.params = whisper.build_params(weights, self.dims, self.dtype)
        audio_heads = weights.get("encoder/num_heads")
        self.n_audio_head = (
            int(np.asarray(audio_heads)) if audio_heads is not None else self.dims.n_audio_head
        )
        text_heads = weights.get("decoder/num_heads")
        self.n_text_head = (
            int(np.asarray(text_heads)) if text_heads is not None else self.dims.n_text_head
        )
        self.alignment = tuple(
            (int(layer), int(head)) for layer, head in alignment_heads(self.model_path, self.dims)
        )
        tokenizer_file = self.model_path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelNotAvailableError(f"{self.model_path} has no tokenizer.json")
        self._hf_tokenizer = HFTokenizer.from_file(str(tokenizer_file))
        self.is_multilingual = self.dims.n_vocab >= 51865
        self.supported_languages = (
            tuple(
                code
                for code in _LANGUAGE_CODES
                if self._hf_tokenizer.token_to_id(f"<|{code}|>") is not None
            )
            if self.is_multilingual
            else ("en",)
        )
        self._language_tokens = jnp.asarray(
            [
                self._hf_tokenizer.token_to_id(f"<|{code}|>") or 0
                for code in self.supported_languages
            ],
            jnp.int32,
        )
        self._features = FeatureExtractor(feature_size=self.dims.n_mels)
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._suppress = jnp.asarray(self._suppressed_tokens())
        self._sot = jnp.int32(self._tokenizer("transcribe", "en").sot)
        self._fallback_key = jax.random.key(0)
        self.info = EngineInfo(
            name="jax",
            model=model_name,
            device=jax.devices()[0].platform,
            compute_type=compute_type,
            details={"jax": jax.__version__, "audio_context": self.options.audio_context},
        )
        logger.info(
            "JAX Whisper %s on %s loaded in %.1f s",
            model_name,
            self.info.device,
            time.perf_counter() - started,
        )

    # -- Engine interface -----------------------------------------------------------------------

    def check_task(self, task: Task, language: str | None) -> None:
        if task not in ("transcribe", "translate"):
            raise ConfigError(f"unknown task '{task}': use transcribe or translate")
        if not self.is_multilingual:
            if language not in (None, "en"):
                raise ConfigError(
                    f"model '{self.info.model}' is English-only; language '{language}' "
                    "needs a multilingual model such as --model base"
                )
        elif language is not None and language not in self.supported_languages:
            raise ConfigError(f"unknown language '{language}': use auto or a Whisper code like de")

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        if not windows:
            return []
        for window in windows:
            self.check_task(window.task, window.language)
        lengths = [len(w.audio) for w in windows]
        batch = self._encode(windows)
        tokenizers = [
            self._tokenizer(w.task, lang) for w, (lang, _) in zip(windows, batch.languages)
        ]
        prefixes = [self._prefix(t, w.prompt) for t, w in zip(tokenizers, windows)]
        decoded = self._decode_with_fallback(batch, prefixes, tokenizers, lengths)
        hypotheses = []
        for row, (lang, lang_prob) in enumerate(batch.languages):
            result = decoded[row]
            words: tuple[Word, ...] = ()
            if not self._is_silence(result) and result.tokens:
                seconds = lengths[row] / SAMPLE_RATE
                audio_frames = min(batch.frames[row], math.ceil(seconds * TOKENS_PER_SECOND))
                words = self._words(tokenizers[row], result, audio_frames, seconds)
                times = 3 if self._needs_fallback(result) else 2
                words = _collapse_repetitions(words, times=times, min_words=1 if times == 3 else 3)
            hypotheses.append(
                Hypothesis(
                    words=words,
                    language=lang,
                    language_probability=lang_prob,
                    segment_ends=(),
                    no_speech_probability=result.no_speech_probability,
                    avg_logprob=result.avg_logprob,
                    temperature=result.temperature,
                )
            )
        return hypotheses

    def warm_up(
        self,
        batch_sizes: tuple[int, ...] = (1,),
        buckets_s: tuple[float, ...] = STREAMING_BUCKETS_S,
    ) -> float:
        """Compile (or load from the cache) the encoders of `buckets_s` and their decoders at
        `batch_sizes`; returns seconds."""
        started = time.perf_counter()
        if self.options.audio_context == "full":
            buckets_s = (30.0,)
        tokenizer = self._tokenizer("transcribe", "en")
        prefix = self._prefix(tokenizer, "")
        silence = np.zeros(0, np.float32)
        for bucket in buckets_s:
            frames = int(bucket * TOKENS_PER_SECOND)
            cross, _ = self._encode_rows(self._mel(silence, bucket), frames)
            for size in batch_sizes:
                rows = _padded_size(size)
                self._generate(
                    cross if rows == 1 else whisper.stack_rows((cross,) * rows),
                    jnp.ones((rows, frames), bool),
                    bucket,
                    [prefix] * rows,
                    [tokenizer] * rows,
                    [8] * rows,
                    0.0,
                )
        return time.perf_counter() - started

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int = 5
    ) -> OfflineResult:
        """Whole recording in 30 s windows, each conditioned on the text before it (greedy).

        As Whisper seeks past its last complete segment, each window but the last keeps only
        the words that end clear of its end (`OFFLINE_MARGIN_S`); the next window starts where
        the first word it dropped starts, so no word is cut in two at a window boundary."""
        self.check_task(task, language)
        window = int((30.0 - self.options.silence_tail_s) * SAMPLE_RATE)
        words: list[Word] = []
        detected = language
        offset = 0
        while offset < len(audio):
            chunk = audio[offset : offset + window]
            prompt = "".join(w.text for w in words)[-200:]
            (hypothesis,) = self.transcribe([Window(chunk, task, detected, prompt)])
            detected = detected or hypothesis.language
            shift = offset / SAMPLE_RATE
            heard = list(hypothesis.words)
            advance = len(chunk)
            if offset + len(chunk) < len(audio):
                limit = len(chunk) / SAMPLE_RATE - OFFLINE_MARGIN_S
                cut = next((i for i, w in enumerate(heard) if w.end > limit), len(heard))
                if cut < len(heard) and heard[cut].start >= OFFLINE_MIN_ADVANCE_S:
                    advance = int(heard[cut].start * SAMPLE_RATE)
                    heard = heard[:cut]
            words += [Word(w.text, w.start + shift, w.end + shift, w.probability) for w in heard]
            offset += advance
        text = "".join(w.text for w in words).strip()
        return OfflineResult(words=tuple(words), text=text, language=detected or "en")

    # -- audio ---------------------------------------------------------------------------------

    def bucket_s(self, samples: int) -> float:
        """The audio length a window of `samples` is encoded at."""
        seconds = samples / SAMPLE_RATE + self.options.silence_tail_s
        if self.options.audio_context == "full":
            return 30.0
        return next((b for b in AUDIO_BUCKETS_S if seconds <= b), 30.0)

    def _encode(self, windows: list[Window]) -> _Batch:
        """Encode each window at its own bucket (so it decodes the same alone or in a batch:
        on CPU, batching the encoder saves nothing), padded to a shared context, the frames
        past each row's own bucket masked."""
        buckets = [self.bucket_s(len(w.audio)) for w in windows]
        context = max(buckets)
        frames = int(context * TOKENS_PER_SECOND)
        rows: list[whisper.LayerKV] = []
        languages: list[tuple[str, float]] = []
        for window, bucket in zip(windows, buckets):
            cross, language_logits = self._encode_rows(self._mel(window.audio, bucket), frames)
            rows.append(cross)
            languages.append(self._language(window, language_logits))
        row_frames = [int(b * TOKENS_PER_SECOND) for b in buckets]
        mask = np.arange(frames)[None, :] < np.array(row_frames)[:, None]
        return _Batch(rows, mask, row_frames, languages, context)

    def _encode_rows(self, mel: np.ndarray, frames: int):
        return whisper.encode(
            self.params,
            jnp.asarray(mel[None], dtype=self.dtype),
            self._sot,
            self._language_tokens,
            n_audio_head=self.n_audio_head,
            n_text_head=self.n_text_head,
            detect=self.is_multilingual,
            frames=frames,
        )

    def _language(self, window: Window, language_logits: jnp.ndarray) -> tuple[str, float]:
        if not self.is_multilingual:
            return "en", 1.0
        if window.language is not None:
            return window.language, 1.0
        scores = np.asarray(language_logits[0], dtype=np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return self.supported_languages[best], float(probs[best])

    def _mel(self, audio: np.ndarray, bucket: float) -> np.ndarray:
        total = int(bucket * SAMPLE_RATE)
        tail = int(self.options.silence_tail_s * SAMPLE_RATE)
        padded = np.zeros(total, dtype=np.float32)
        clipped = audio[: total - tail]
        padded[: len(clipped)] = clipped
        return self._features(padded, padding=0)[:, : total // self._features.hop_length]

    # -- tokens --------------------------------------------------------------------------------

    def _tokenizer(self, task: str, language: str) -> Tokenizer:
        key = (task, language)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self._hf_tokenizer,
                self.is_multilingual,
                task=task if self.is_multilingual else None,
                language=language if self.is_multilingual else None,
            )
        return self._tokenizers[key]

    def _suppressed_tokens(self) -> np.ndarray:
        """Tokens never generated: Whisper's non-speech symbols, every special token but
        end-of-text, and timestamps (windows are decoded without them)."""
        tokenizer = self._tokenizer("transcribe", "en")
        mask = np.zeros(self.dims.n_vocab, dtype=bool)
        mask[list(tokenizer.non_speech_tokens)] = True
        mask[tokenizer.eot + 1 :] = True
        return mask

    def _prefix(self, tokenizer: Tokenizer, prompt: str) -> list[int]:
        prefix: list[int] = []
        if prompt.strip():
            prompt_tokens = tokenizer.encode(" " + prompt.strip())[-MAX_PROMPT_TOKENS:]
            prefix = [tokenizer.sot_prev, *prompt_tokens]
        return [*prefix, *tokenizer.sot_sequence, tokenizer.no_timestamps]

    # -- decoding ------------------------------------------------------------------------------

    def _max_new_tokens(self, samples: int) -> int:
        return max(8, int(samples / SAMPLE_RATE * self.options.max_tokens_per_second) + 4)

    def _capacity(self, context: float) -> int:
        """Cache slots for a context: the prompt, the most tokens its audio may need, one more
        for the end; rounded up to 16."""
        needed = PREFILL_WIDTH + self._max_new_tokens(int(context * SAMPLE_RATE)) + 2
        return min(math.ceil(needed / 16) * 16, self.dims.n_text_ctx)

    def _decode_with_fallback(self, batch: _Batch, prefixes, tokenizers, lengths) -> list[_Decoded]:
        results: list[_Decoded | None] = [None] * len(prefixes)
        pending = list(range(len(prefixes)))
        for temperature in self.options.temperatures:
            rows = pending + [pending[-1]] * (_padded_size(len(pending)) - len(pending))
            chosen = [batch.rows[r] for r in rows]
            decoded = self._generate(
                chosen[0] if len(chosen) == 1 else whisper.stack_rows(tuple(chosen)),
                jnp.asarray(batch.audio_mask[rows]),
                batch.context_s,
                [prefixes[r] for r in rows],
                [tokenizers[r] for r in rows],
                [self._max_new_tokens(lengths[r]) for r in rows],
                temperature,
            )
            still = []
            for row, result in zip(pending, decoded):
                best = results[row]
                if best is None or result.avg_logprob > best.avg_logprob:
                    results[row] = result
                if self._needs_fallback(result) and not self._is_silence(result):
                    still.append(row)
            if not still:
                break
            pending = still
        return [r for r in results if r is not None]

    def _generate(
        self, cross, audio_mask, context, prefixes, tokenizers, max_new, temperature
    ) -> list[_Decoded]:
        batch = len(prefixes)
        eot = tokenizers[0].eot
        capacity = self._capacity(context)
        tokens = np.full((batch, PREFILL_WIDTH), eot, dtype=np.int32)
        for row, prefix in enumerate(prefixes):
            tokens[row, PREFILL_WIDTH - len(prefix) :] = prefix
        sot_slots = [
            PREFILL_WIDTH - len(p) + p.index(tokenizers[r].sot) for r, p in enumerate(prefixes)
        ]
        room = capacity - PREFILL_WIDTH - 1
        self._fallback_key, key = jax.random.split(self._fallback_key)
        out = whisper.generate(
            self.params,
            jnp.asarray(tokens),
            jnp.asarray([len(p) for p in prefixes], jnp.int32),
            jnp.asarray(sot_slots, jnp.int32),
            cross,
            audio_mask,
            jnp.asarray([min(n, room) for n in max_new], jnp.int32),
            self._suppress,
            jnp.int32(eot),
            jnp.int32(tokenizers[0].no_speech),
            jnp.float32(temperature),
            key,
            n_head=self.n_text_head,
            alignment=self.alignment,
            capacity=capacity,
        )
        out = jax.device_get(out)
        decoded = []
        for row in range(batch):
            count = int(out.count[row])
            generated = [int(t) for t in out.tokens[row, :count]]
            text = tokenizers[row].decode(generated)
            decoded.append(
                _Decoded(
                    tokens=generated,
                    avg_logprob=float(out.logprob_sum[row] / (count + 1)),
                    compression_ratio=_compression_ratio(text),
                    no_speech_probability=float(out.no_speech_probability[row]),
                    temperature=temperature,
                    token_probabilities=out.token_probability[row, :count],
                    attention=out.attention[row, : count + 1].transpose(1, 0, 2),
                )
            )
        return decoded

    def _needs_fallback(self, decoded: _Decoded) -> bool:
        return (
            decoded.compression_ratio > self.options.compression_ratio_threshold
            or decoded.avg_logprob < self.options.log_prob_threshold
        )

    def _is_silence(self, decoded: _Decoded) -> bool:
        return (
            decoded.no_speech_probability > self.options.no_speech_threshold
            and decoded.avg_logprob < self.options.log_prob_threshold
        )

    # -- word times ----------------------------------------------------------------------------

    def _words(
        self, tokenizer: Tokenizer, decoded: _Decoded, n_frames: int, duration_s: float
    ) -> tuple[Word, ...]:
        """Words of the decoded tokens, timed by DTW on the alignment heads' attention."""
        text_tokens = decoded.tokens
        frames = token_frames(decoded.attention, n_frames)
        token_probs = decoded.token_probabilities
        words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
        if len(word_tokens) <= 1:
            return ()
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        times = frames / TOKENS_PER_SECOND
        if len(times) < len(boundaries):
            times = np.pad(times, (0, len(boundaries) - len(times)), mode="edge")
        starts, ends = times[boundaries[:-1]], times[boundaries[1:]]
        raw = [
            [
                word,
                list(tok),
                float(s),
                float(e),
                float(np.mean(token_probs[i:j])) if j > i else 0.0,
            ]
            for word, tok, s, e, i, j in zip(
                words[:-1], word_tokens[:-1], starts, ends, boundaries[:-1], boundaries[1:]
            )
        ]
        raw = _merge_punctuation(raw)
        result: list[Word] = []
        limit = duration_s - 0.05
        for text, _tokens, start, end, probability in raw:
            if not text.strip():
                continue
            if start >= limit:
                break  # decoded from the silent tail: not speech
            result.append(Word(text, round(start, 3), round(min(end, duration_s), 3), probability))
        _clamp_long_words(result)
        return tuple(result)


def _padded_size(size: int) -> int:
    """Batches of 1, 2, 4, 8...: a handful of compiled shapes instead of one per size."""
    return 1 << (size - 1).bit_length()
