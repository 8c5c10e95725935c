"""The JAX Whisper engine: the Engine interface of the streaming core, batched across streams.

One call encodes every window together (padded to a shared audio bucket), detects languages,
prefills each row's prompt, then decodes greedily with a key/value cache, rows finishing at
their own time. Robustness as openai/whisper's transcribe: suppressed tokens, temperature
fallback on repetitive or improbable text, no-speech probability. Word times come from the
alignment heads' cross-attention (teacher-forced pass) and DTW. Windows are decoded without
timestamp tokens, so segment ends are not reported (the streaming policy cuts at sentence ends).
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

AUDIO_BUCKETS_S = (5.0, 10.0, 15.0, 20.0, 30.0)
TEXT_BUCKET = 32
# Fixed token lengths so each jitted program compiles once: the prefill (prompt of at most
# MAX_PROMPT_TOKENS + the start sequence) and the teacher-forced pass for word times.
PREFILL_WIDTH = 96
WORDS_WIDTH = 256
MAX_PROMPT_TOKENS = 64


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


class JaxEngine:
    """Whisper in JAX on the best device jax sees (float32 on CPU, bfloat16 on GPU)."""

    def __init__(
        self, model_path: Path, model_name: str, options: DecodeOptions | None = None
    ) -> None:
        self.model_path = Path(model_path)
        self.options = options or DecodeOptions()
        enable_compilation_cache()
        started = time.perf_counter()
        weights, self.dims = load_weights(self.model_path)
        gpu = has_gpu()
        dtype = jnp.bfloat16 if gpu else jnp.float32
        self.params = whisper.build_params(weights, self.dims, dtype)
        self.heads = weights.get("encoder/num_heads")
        self.n_audio_head = (
            int(np.asarray(self.heads)) if self.heads is not None else self.dims.n_audio_head
        )
        text_heads = weights.get("decoder/num_heads")
        self.n_text_head = (
            int(np.asarray(text_heads)) if text_heads is not None else self.dims.n_text_head
        )
        self.alignment = alignment_heads(self.model_path, self.dims)
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
        self._features = FeatureExtractor(feature_size=self.dims.n_mels)
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._suppress = self._suppressed_tokens()
        self.info = EngineInfo(
            name="jax",
            model=model_name,
            device=jax.devices()[0].platform,
            compute_type="bfloat16" if gpu else "float32",
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
        # Batches of 1, 2, 4, 8...: a handful of compiled shapes instead of one per size.
        real = len(windows)
        padded = 1 << (real - 1).bit_length()
        if padded > real:
            return self._transcribe(windows + [windows[-1]] * (padded - real))[:real]
        return self._transcribe(windows)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Compile (or load from the cache) the programs streaming needs; returns seconds."""
        started = time.perf_counter()
        tokenizer = self._tokenizer("transcribe", "en")
        dtype = self.params["encoder"]["pos"].dtype
        for batch in batch_sizes:
            for bucket in AUDIO_BUCKETS_S[:4]:
                frames = int(bucket * 100)
                mel = jnp.zeros((batch, self.dims.n_mels, frames), dtype)
                audio = whisper.encode(self.params, mel, n_head=self.n_audio_head)
                whisper.cross_keys_values(self.params, audio, n_head=self.n_text_head)
            shape = (self.dims.n_text_layer, batch, self.n_text_head, self.dims.n_audio_ctx)
            head_dim = self.dims.n_text_state // self.n_text_head
            cross = jnp.zeros((*shape, head_dim), dtype)
            mask = jnp.ones((batch, self.dims.n_audio_ctx), bool)
            for width, capacity in (
                (PREFILL_WIDTH, self.dims.n_text_ctx),
                (1, self.dims.n_text_ctx),
            ):
                tokens = jnp.full((batch, width), tokenizer.eot, jnp.int32)
                whisper.decode(
                    self.params,
                    tokens,
                    jnp.zeros(batch, jnp.int32),
                    *self._empty_cache(batch, capacity),
                    cross,
                    cross,
                    mask,
                    n_head=self.n_text_head,
                )
        cross = jnp.zeros((*shape[:1], 1, *shape[2:], head_dim), dtype)
        whisper.decode(
            self.params,
            jnp.full((1, WORDS_WIDTH), tokenizer.eot, jnp.int32),
            jnp.zeros(1, jnp.int32),
            *self._empty_cache(1, WORDS_WIDTH),
            cross,
            cross,
            jnp.ones((1, self.dims.n_audio_ctx), bool),
            n_head=self.n_text_head,
        )
        return time.perf_counter() - started

    def _transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        lengths = [len(w.audio) for w in windows]
        cross_k, cross_v, audio_mask, row_frames = self._encode(windows)
        languages = self._languages(cross_k, cross_v, audio_mask, windows)
        tokenizers = [self._tokenizer(w.task, lang) for w, (lang, _) in zip(windows, languages)]
        prefixes = [self._prefix(t, w.prompt) for t, w in zip(tokenizers, windows)]
        decoded = self._decode_with_fallback(
            cross_k, cross_v, audio_mask, prefixes, tokenizers, lengths
        )
        hypotheses = []
        for row, (lang, lang_prob) in enumerate(languages):
            result = decoded[row]
            words: tuple[Word, ...] = ()
            if not self._is_silence(result) and result.tokens:
                frames = row_frames[row]
                words = self._words(
                    cross_k[:, row : row + 1],
                    cross_v[:, row : row + 1],
                    audio_mask[row : row + 1],
                    tokenizers[row],
                    prefixes[row],
                    result.tokens,
                    min(frames, math.ceil(lengths[row] / SAMPLE_RATE * TOKENS_PER_SECOND)),
                    lengths[row] / SAMPLE_RATE,
                )
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

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int = 5
    ) -> OfflineResult:
        """Whole recording in 30 s windows, each conditioned on the text before it (greedy)."""
        self.check_task(task, language)
        step = int(28 * SAMPLE_RATE)
        words: list[Word] = []
        detected = language
        offset = 0
        while offset < len(audio):
            chunk = audio[offset : offset + step]
            prompt = "".join(w.text for w in words)[-200:]
            (hypothesis,) = self.transcribe([Window(chunk, task, detected, prompt)])
            detected = detected or hypothesis.language
            shift = offset / SAMPLE_RATE
            words += [
                Word(w.text, w.start + shift, w.end + shift, w.probability)
                for w in hypothesis.words
            ]
            offset += step
        text = "".join(w.text for w in words).strip()
        return OfflineResult(words=tuple(words), text=text, language=detected or "en")

    # -- audio ---------------------------------------------------------------------------------

    def bucket_s(self, samples: int) -> float:
        seconds = samples / SAMPLE_RATE + self.options.silence_tail_s
        if self.options.audio_context == "full":
            return 30.0
        return next((b for b in AUDIO_BUCKETS_S if seconds <= b), 30.0)

    def _encode(self, windows: list[Window]):
        """Cross-attention keys/values of every window, each encoded at its own audio bucket
        (so a window decodes the same alone or in a batch), padded to the longest with a mask.
        Returns (cross_k, cross_v, audio_mask [B, T], frames per row)."""
        buckets = [self.bucket_s(len(w.audio)) for w in windows]
        groups: dict[float, list[int]] = {}
        for row, bucket in enumerate(buckets):
            groups.setdefault(bucket, []).append(row)
        # The decoder always sees 30 s of (masked) frames: one program for every bucket.
        frames = self.dims.n_audio_ctx
        parts_k, parts_v, order = [], [], []
        for bucket, rows in groups.items():
            mels = np.stack([self._mel(windows[r].audio, bucket) for r in rows])
            dtype = self.params["encoder"]["pos"].dtype
            audio = whisper.encode(
                self.params, jnp.asarray(mels, dtype=dtype), n_head=self.n_audio_head
            )
            k, v = whisper.cross_keys_values(self.params, audio, n_head=self.n_text_head)
            pad = [(0, 0)] * 3 + [(0, frames - k.shape[3]), (0, 0)]
            parts_k.append(jnp.pad(k, pad))
            parts_v.append(jnp.pad(v, pad))
            order += rows
        cross_k = jnp.concatenate(parts_k, axis=1)
        cross_v = jnp.concatenate(parts_v, axis=1)
        if order != sorted(order):
            back = jnp.asarray(np.argsort(order))
            cross_k, cross_v = cross_k[:, back], cross_v[:, back]
        row_frames = [int(b * TOKENS_PER_SECOND) for b in buckets]
        mask = np.arange(frames)[None, :] < np.array(row_frames)[:, None]
        return cross_k, cross_v, jnp.asarray(mask), row_frames

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

    def _languages(
        self, cross_k, cross_v, audio_mask, windows: list[Window]
    ) -> list[tuple[str, float]]:
        if not self.is_multilingual:
            return [("en", 1.0)] * len(windows)
        unknown = [i for i, w in enumerate(windows) if w.language is None]
        out = [(w.language or "", 1.0) for w in windows]
        if not unknown:
            return out
        tokenizer = self._tokenizer("transcribe", "en")
        batch = len(windows)
        tokens = jnp.full((batch, 1), tokenizer.sot, dtype=jnp.int32)
        cache = self._empty_cache(batch, self.dims.n_text_ctx)
        logits, *_ = whisper.decode(
            self.params,
            tokens,
            jnp.zeros(batch, jnp.int32),
            *cache,
            cross_k,
            cross_v,
            jnp.ones(cross_k.shape[1:2] + cross_k.shape[3:4], bool),
            n_head=self.n_text_head,
        )
        lang_ids = np.array(
            [self._hf_tokenizer.token_to_id(f"<|{code}|>") for code in self.supported_languages]
        )
        scores = np.asarray(logits[:, 0, :], dtype=np.float32)[:, lang_ids]
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for row in unknown:
            best = int(probs[row].argmax())
            out[row] = (self.supported_languages[best], float(probs[row, best]))
        return out

    # -- decoding ------------------------------------------------------------------------------

    def _empty_cache(self, batch: int, capacity: int):
        """Fresh key/value caches (the decoder consumes them: they are donated)."""
        d, h = self.dims.n_text_state, self.n_text_head
        shape = (self.dims.n_text_layer, batch, capacity, h, d // h)
        dtype = self.params["decoder"]["pos"].dtype
        # Built on the host and copied: jnp.zeros dispatches a fill program per call.
        zeros = np.zeros(shape, dtype=np.float32)
        return jnp.asarray(zeros, dtype=dtype), jnp.asarray(zeros, dtype=dtype)

    def _decode_with_fallback(
        self, cross_k, cross_v, audio_mask, prefixes, tokenizers, lengths
    ) -> list[_Decoded]:
        results: list[_Decoded | None] = [None] * len(prefixes)
        pending = list(range(len(prefixes)))
        for temperature in self.options.temperatures:
            rows = jnp.asarray(pending)
            decoded = self._generate(
                cross_k[:, rows],
                cross_v[:, rows],
                audio_mask[rows],
                [prefixes[r] for r in pending],
                [tokenizers[r] for r in pending],
                [lengths[r] for r in pending],
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
        self, cross_k, cross_v, audio_mask, prefixes, tokenizers, lengths, temperature
    ) -> list[_Decoded]:
        batch = len(prefixes)
        eot = tokenizers[0].eot
        longest = max(len(p) for p in prefixes)
        width = max(PREFILL_WIDTH, math.ceil(longest / TEXT_BUCKET) * TEXT_BUCKET)
        max_new = [
            max(8, int(n / SAMPLE_RATE * self.options.max_tokens_per_second) + 4) for n in lengths
        ]
        budget = min(max(max_new), self.dims.n_text_ctx - longest - 1)
        capacity = self.dims.n_text_ctx
        tokens = np.full((batch, width), eot, dtype=np.int32)
        for row, prefix in enumerate(prefixes):
            tokens[row, : len(prefix)] = prefix
        cache_k, cache_v = self._empty_cache(batch, capacity)
        logits, cache_k, cache_v, _ = whisper.decode(
            self.params,
            jnp.asarray(tokens),
            jnp.zeros(batch, jnp.int32),
            cache_k,
            cache_v,
            cross_k,
            cross_v,
            audio_mask,
            n_head=self.n_text_head,
        )
        logits = np.asarray(logits, dtype=np.float32)
        sot_index = [p.index(tokenizers[r].sot) for r, p in enumerate(prefixes)]
        no_speech = []
        for row in range(batch):
            at_sot = logits[row, sot_index[row]]
            p = np.exp(at_sot - at_sot.max())
            no_speech.append(float(p[tokenizers[row].no_speech] / p.sum()))
        next_logits = np.stack([logits[row, len(prefixes[row]) - 1] for row in range(batch)])
        offsets = np.array([len(p) for p in prefixes], dtype=np.int32)
        generated: list[list[int]] = [[] for _ in range(batch)]
        logprob_sums = np.zeros(batch)
        done = np.zeros(batch, dtype=bool)
        rng = np.random.default_rng(0)
        for step in range(budget):
            scores = np.where(self._suppress, -np.inf, next_logits)
            if step == 0:
                scores[:, eot] = -np.inf  # at least one token before the end
            logprobs = scores - _logsumexp(scores)
            if temperature > 0:
                probs = np.exp((scores - scores.max(-1, keepdims=True)) / temperature)
                probs /= probs.sum(-1, keepdims=True)
                chosen = np.array([rng.choice(len(p), p=p) for p in probs])
            else:
                chosen = scores.argmax(-1)
            for row in range(batch):
                if done[row]:
                    continue
                token = int(chosen[row])
                logprob_sums[row] += logprobs[row, token]
                if token == eot or len(generated[row]) >= max_new[row]:
                    done[row] = True
                else:
                    generated[row].append(token)
            if done.all():
                break
            step_tokens = np.where(done, eot, chosen).astype(np.int32)[:, None]
            logits, cache_k, cache_v, _ = whisper.decode(
                self.params,
                jnp.asarray(step_tokens),
                jnp.asarray(np.minimum(offsets, capacity - 1)),
                cache_k,
                cache_v,
                cross_k,
                cross_v,
                audio_mask,
                n_head=self.n_text_head,
            )
            offsets = offsets + 1
            next_logits = np.asarray(logits[:, 0], dtype=np.float32)
        out = []
        for row in range(batch):
            text = tokenizers[row].decode(generated[row])
            out.append(
                _Decoded(
                    tokens=generated[row],
                    avg_logprob=float(logprob_sums[row] / (len(generated[row]) + 1)),
                    compression_ratio=_compression_ratio(text),
                    no_speech_probability=no_speech[row],
                    temperature=temperature,
                )
            )
        return out

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
        self, cross_k, cross_v, audio_mask, tokenizer, prefix, text_tokens, n_frames, duration_s
    ):
        """Teacher-forced pass over prefix + text + eot; DTW on the alignment heads."""
        sequence = [*prefix, *text_tokens, tokenizer.eot]
        width = min(
            max(WORDS_WIDTH, math.ceil(len(sequence) / WORDS_WIDTH) * WORDS_WIDTH),
            self.dims.n_text_ctx,
        )
        sequence = sequence[:width]
        tokens = np.full((1, width), tokenizer.eot, dtype=np.int32)
        tokens[0, : len(sequence)] = sequence
        cache_k, cache_v = self._empty_cache(1, width)
        logits, _, _, cross = whisper.decode(
            self.params,
            jnp.asarray(tokens),
            jnp.zeros(1, jnp.int32),
            cache_k,
            cache_v,
            cross_k,
            cross_v,
            audio_mask,
            n_head=self.n_text_head,
        )
        cross = np.asarray(cross[:, 0], dtype=np.float32)  # [L, H, S, T]
        first = len(prefix) - 1  # the no-timestamps token, then the text tokens
        rows = slice(first, first + 1 + len(text_tokens))
        attention = np.stack([cross[layer, head, rows] for layer, head in self.alignment])
        frames = token_frames(attention, n_frames)
        logits = np.asarray(logits[0], dtype=np.float32)
        token_probs = []
        for i, token in enumerate(text_tokens):
            row = logits[first + i]
            token_probs.append(float(np.exp(row[token] - _logsumexp(row[None])[0, 0])))
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


def _logsumexp(x: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(x), x, -np.inf)
    top = finite.max(-1, keepdims=True)
    return top + np.log(np.exp(finite - top).sum(-1, keepdims=True))
