"""The JAX Whisper engine: the Engine interface of the streaming core, batched across streams.

Each window is encoded at its own audio bucket (its length plus the silent tail, rounded up to a
few fixed lengths), its log-mel spectrogram computed and its language detected in the same
program; on a GPU the windows of one bucket are encoded as one batch. The windows of a call are
then decoded together: their cross-attention keys/values padded to a shared context with a
mask, prompts left-padded, and the whole greedy token loop run on the device in one program per
(batch size, context), rows finishing at their own time. Robustness as openai/whisper's
transcribe: suppressed tokens, temperature fallback on repetitive or improbable text, no-speech
probability. Word times come from the alignment heads' cross-attention recorded while
generating, prepared for DTW on the device (`model.alignment_matrix`). Windows are decoded
without timestamp tokens, so segment ends are not reported (the streaming policy cuts at
sentence ends).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from tokenizers import Tokenizer as HFTokenizer

from bot.asr.decoding import (
    MAX_WINDOW_S,
    Decoded,
    DecodeOptions,
    compression_ratio,
    decode_with_fallback,
    hypothesis,
    is_silence,
    prompt_tokens,
)
from bot.asr.engine import EngineInfo, Hypothesis, OfflineResult, Task, Window
from bot.asr.jax import model as whisper
from bot.asr.jax.device import (
    COMPUTE_TYPES,
    compute_type_for,
    enable_compilation_cache,
    has_gpu,
)
from bot.asr.jax.timing import TOKENS_PER_SECOND, token_frames
from bot.asr.jax.weights import alignment_heads, load_weights
from bot.asr.languages import LanguageSupport
from bot.asr.models import MULTILINGUAL_MIN_VOCAB
from bot.asr.offline import transcribe_in_windows
from bot.asr.tokens import Tokenizers
from bot.asr.words import window_words, word_timings
from bot.errors import ConfigError, ModelNotAvailableError
from bot.languages import LANGUAGE_CODES
from bot.messages import SAMPLE_RATE, Word

logger = logging.getLogger(__name__)

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
# Prefill slots besides the prompt text: <|startofprev|>, the start sequence (start, language,
# task) and <|notimestamps|>, rounded up.
START_SLOTS = 8
OFFLINE_REFERENCE = "greedy 29 s windows, conditioned on previous text"
# Windows of one bucket encoded in one program on a GPU (on CPU one at a time: batching the
# encoder there saves nothing and padding a batch to its compiled size costs).
GPU_ENCODE_ROWS = 64
# Compiled batch sizes on a GPU, where a decoder step costs about the same for 16 rows as for
# 64 (it reads every weight once either way) and each program takes long to compile; on CPU
# every power of two.
GPU_BATCH_SIZES = (1, 16, 64, 128, 256, 512)
# A program whose compilation takes longer than this is logged (a GPU's first start).
SLOW_COMPILE_S = 5.0
# Programs compiled at once by warm_up (XLA compiles with the GIL released).
WARM_UP_THREADS = 8


@dataclass(frozen=True)
class _Decoded(Decoded):
    token_probabilities: np.ndarray  # [tokens]
    alignment: np.ndarray  # [1 + tokens, audio frames]: what DTW walks (alignment_matrix)


@dataclass
class _Batch:
    """The windows of one call, encoded and padded to a shared audio context."""

    cross: whisper.LayerKV  # cross-attention keys/values [R, H, T, Dh] of every encoded row
    index: np.ndarray  # [B] each window's row in `cross`
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
        encode_rows: int | None = None,
    ) -> None:
        """`compute_type` float32, bfloat16 or float16; None (or auto) picks the device's
        (`compute_type_for`). `encode_rows`: windows of one bucket encoded in one program (None:
        GPU_ENCODE_ROWS on a GPU, 1 on CPU). Options it cannot honour (beam search) are
        refused."""
        self.model_path = Path(model_path)
        self.options = options or DecodeOptions()
        if self.options.beam_size > 1:
            raise ConfigError(
                f"the jax engine decodes greedily; beam size {self.options.beam_size} needs "
                "--engine ctranslate2 (or --beam-size 1)"
            )
        if self.options.translate_beam_size > 1:
            raise ConfigError(
                "the jax engine decodes greedily; engine.translate_beam_size "
                f"{self.options.translate_beam_size} needs --engine ctranslate2 (or auto or 1)"
            )
        compute_type = compute_type_for(compute_type, has_gpu())
        self._prefill_width = self.options.max_prompt_tokens + START_SLOTS
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
        self.is_multilingual = self.dims.n_vocab >= MULTILINGUAL_MIN_VOCAB
        self._tokenizers = Tokenizers(
            HFTokenizer.from_file(str(tokenizer_file)), self.is_multilingual
        )
        self.supported_languages = (
            tuple(c for c in LANGUAGE_CODES if self._tokenizers.language_token(c) is not None)
            if self.is_multilingual
            else ("en",)
        )
        self._language_support = LanguageSupport(
            model_name, self.is_multilingual, self.supported_languages
        )
        self._language_tokens = jnp.asarray(
            [self._tokenizers.language_token(code) or 0 for code in self.supported_languages],
            jnp.int32,
        )
        self._mel_filters = jnp.asarray(
            FeatureExtractor.get_mel_filters(SAMPLE_RATE, whisper.N_FFT, self.dims.n_mels),
            jnp.float32,
        )
        self._window = jnp.asarray(np.hanning(whisper.N_FFT + 1)[:-1], jnp.float32)
        gpu = has_gpu()
        self._encode_rows_max = encode_rows or (GPU_ENCODE_ROWS if gpu else 1)
        self._compiled_sizes = GPU_BATCH_SIZES if gpu else None
        self._suppress = jnp.asarray(self._suppressed_tokens())
        self._sot = jnp.int32(self._tokenizers.get("transcribe", "en").sot)
        self._warned_beam = False
        self._fallback_key = jax.random.key(0)
        self.info = EngineInfo(
            name="jax",
            model=model_name,
            device=jax.devices()[0].platform,
            compute_type=compute_type,
            details={
                "jax": jax.__version__,
                "audio_context": self.options.audio_context,
                "min_context_s": f"{self.options.min_context_s:g}",
                "beam_size": "1",
                "offline_reference": OFFLINE_REFERENCE,
            },
        )
        logger.info(
            "JAX Whisper %s on %s loaded in %.1f s",
            model_name,
            self.info.device,
            time.perf_counter() - started,
        )

    # -- Engine interface -----------------------------------------------------------------------

    def check_task(self, task: Task, language: str | None) -> None:
        self._language_support.check(task, language)

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        if not windows:
            return []
        self._language_support.check_windows(windows)
        lengths = [len(w.audio) for w in windows]
        batch = self._encode(windows)
        tokenizers = [
            self._tokenizers.get(w.task, lang) for w, (lang, _) in zip(windows, batch.languages)
        ]
        prefixes = [self._prefix(t, w.prompt) for t, w in zip(tokenizers, windows)]
        bare = [self._prefix(t, "") for t in tokenizers]
        audio_frames = [
            min(frames, math.ceil(length / SAMPLE_RATE * TOKENS_PER_SECOND))
            for frames, length in zip(batch.frames, lengths)
        ]
        decoded = decode_with_fallback(
            len(windows),
            self.options,
            lambda rows, temperature, with_prompt: self._generate_rows(
                batch,
                rows,
                prefixes if with_prompt else bare,
                tokenizers,
                lengths,
                audio_frames,
                temperature,
            ),
            prompted=[p != b for p, b in zip(prefixes, bare)],
        )
        hypotheses = []
        for row, (language, result) in enumerate(zip(batch.languages, decoded)):
            words: tuple[Word, ...] = ()
            if result.tokens and not is_silence(result, self.options):
                words = self._words(tokenizers[row], result, lengths[row] / SAMPLE_RATE)
            hypotheses.append(
                hypothesis(words, (), language, result, self.options, windows[row].task)
            )
        return hypotheses

    def batch_sizes(self, most: int) -> tuple[int, ...]:
        """The compiled batch sizes a call of up to `most` windows uses."""
        return tuple(sorted({self._padded(size) for size in range(1, most + 1)}))

    def warm_up(
        self,
        batch_sizes: tuple[int, ...] = (1,),
        buckets_s: tuple[float, ...] = STREAMING_BUCKETS_S,
    ) -> float:
        """Compile (or load from the cache) the encoders of `buckets_s` and their decoders at
        `batch_sizes`, several programs at once; returns seconds."""
        started = time.perf_counter()
        # Buckets under the least context are never used.
        smallest = self.bucket_s(0)
        buckets_s = tuple(b for b in buckets_s if b >= smallest) or (smallest,)
        tokenizer = self._tokenizers.get("transcribe", "en")
        prefix = self._prefix(tokenizer, "")
        sizes = sorted({self._padded(size) for size in batch_sizes})
        encode_sizes = sorted({min(size, self._padded(self._encode_rows_max)) for size in sizes})

        def encode(bucket: float, rows: int) -> whisper.LayerKV:
            silence = self._audio(np.zeros(0, np.float32), bucket)
            with _timed("encoder", bucket, rows):
                frames = int(bucket * TOKENS_PER_SECOND)
                return self._encode_audio(np.stack([silence] * rows), frames)[0]

        def decode(bucket: float, rows: int, cross: whisper.LayerKV) -> None:
            frames = int(bucket * TOKENS_PER_SECOND)
            with _timed("decoder", bucket, rows):
                self._generate(
                    whisper.take_rows(cross, jnp.zeros(rows, jnp.int32)),
                    jnp.ones((rows, frames), bool),
                    bucket,
                    [prefix] * rows,
                    [tokenizer] * rows,
                    [8] * rows,
                    [frames] * rows,
                    0.0,
                )

        encodings = [(bucket, rows) for bucket in buckets_s for rows in encode_sizes]
        with ThreadPoolExecutor(WARM_UP_THREADS) as pool:
            encoded = dict(zip(encodings, pool.map(lambda job: encode(*job), encodings)))
            jobs = [(b, rows, encoded[(b, encode_sizes[-1])]) for b in buckets_s for rows in sizes]
            list(pool.map(lambda job: decode(*job), jobs))
        return time.perf_counter() - started

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int | None = None
    ) -> OfflineResult:
        """Whole recording in 29 s greedy windows (`transcribe_in_windows`); a `beam_size`
        above 1 is logged, once, as not honoured."""
        self.check_task(task, language)
        reference = OFFLINE_REFERENCE
        if beam_size is not None and beam_size > 1:
            reference += f" (beam {beam_size} asked: the jax engine has no beam search)"
            if not self._warned_beam:
                logger.warning("jax engine: offline beam size %d decoded greedily", beam_size)
                self._warned_beam = True
        words, detected = transcribe_in_windows(
            self.transcribe, audio, task, language, MAX_WINDOW_S - self.options.silence_tail_s
        )
        text = "".join(w.text for w in words).strip()
        return OfflineResult(
            words=tuple(words), text=text, language=detected or "en", reference=reference
        )

    def _padded(self, size: int) -> int:
        return _padded_size(size, self._compiled_sizes)

    # -- audio ---------------------------------------------------------------------------------

    def bucket_s(self, samples: int) -> float:
        """The audio length a window of `samples` is encoded at."""
        seconds = max(
            samples / SAMPLE_RATE + self.options.silence_tail_s, self.options.min_context_s
        )
        if self.options.audio_context == "full":
            return 30.0
        return next((b for b in AUDIO_BUCKETS_S if seconds <= b), 30.0)

    def _encode(self, windows: list[Window]) -> _Batch:
        """Encode each window at its own bucket (so it decodes the same alone or in a batch),
        the windows of a bucket up to `_encode_rows_max` at a time (a compiled batch size, the
        last row repeated), padded to a shared context, the frames past each row's own bucket
        masked."""
        buckets = [self.bucket_s(len(w.audio)) for w in windows]
        context = max(buckets)
        frames = int(context * TOKENS_PER_SECOND)
        parts: list[whisper.LayerKV] = []
        index = np.zeros(len(windows), np.int32)
        languages: list[tuple[str, float]] = [("en", 1.0)] * len(windows)
        encoded = 0
        for bucket in sorted(set(buckets)):
            members = [i for i, b in enumerate(buckets) if b == bucket]
            for first in range(0, len(members), self._encode_rows_max):
                group = members[first : first + self._encode_rows_max]
                audio = [self._audio(windows[i].audio, bucket) for i in group]
                audio += [audio[-1]] * (self._padded(len(group)) - len(group))
                cross, language_logits = self._encode_audio(np.stack(audio), frames)
                parts.append(cross)
                language_logits = np.asarray(language_logits, np.float64)
                for row, i in enumerate(group):
                    index[i] = encoded + row
                    languages[i] = self._language(windows[i], language_logits[row])
                encoded += len(audio)
        row_frames = [int(b * TOKENS_PER_SECOND) for b in buckets]
        mask = np.arange(frames)[None, :] < np.array(row_frames)[:, None]
        cross = parts[0] if len(parts) == 1 else whisper.stack_rows(tuple(parts))
        return _Batch(cross, index, mask, row_frames, languages, context)

    def _encode_audio(self, audio: np.ndarray, frames: int):
        return whisper.encode(
            self.params,
            jnp.asarray(audio),
            self._mel_filters,
            self._window,
            self._sot,
            self._language_tokens,
            n_audio_head=self.n_audio_head,
            n_text_head=self.n_text_head,
            detect=self.is_multilingual,
            frames=frames,
        )

    def _language(self, window: Window, scores: np.ndarray) -> tuple[str, float]:
        """The window's language from its language-token logits `scores` [n_languages]."""
        if not self.is_multilingual:
            return "en", 1.0
        if window.language is not None:
            return window.language, 1.0
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return self.supported_languages[best], float(probs[best])

    def _audio(self, audio: np.ndarray, bucket: float) -> np.ndarray:
        """The samples a window is encoded from: its audio, then silence to `bucket` seconds
        (at least the silent tail)."""
        total = int(bucket * SAMPLE_RATE)
        tail = int(self.options.silence_tail_s * SAMPLE_RATE)
        padded = np.zeros(total, dtype=np.float32)
        clipped = audio[: total - tail]
        padded[: len(clipped)] = clipped
        return padded

    # -- tokens --------------------------------------------------------------------------------

    def _suppressed_tokens(self) -> np.ndarray:
        """Tokens never generated: Whisper's non-speech symbols, every special token but
        end-of-text, and timestamps (windows are decoded without them)."""
        tokenizer = self._tokenizers.get("transcribe", "en")
        mask = np.zeros(self.dims.n_vocab, dtype=bool)
        mask[list(tokenizer.non_speech_tokens)] = True
        mask[tokenizer.eot + 1 :] = True
        return mask

    def _prefix(self, tokenizer: Tokenizer, prompt: str) -> list[int]:
        prefix: list[int] = []
        if previous := prompt_tokens(tokenizer, prompt, self.options.max_prompt_tokens):
            prefix = [tokenizer.sot_prev, *previous]
        return [*prefix, *tokenizer.sot_sequence, tokenizer.no_timestamps]

    # -- decoding ------------------------------------------------------------------------------

    def _max_new_tokens(self, samples: int) -> int:
        return max(8, int(samples / SAMPLE_RATE * self.options.max_tokens_per_second) + 4)

    def _capacity(self, context: float) -> int:
        """Cache slots for a context: the prompt, the most tokens its audio may need, one more
        for the end; rounded up to 16."""
        needed = self._prefill_width + self._max_new_tokens(int(context * SAMPLE_RATE)) + 2
        return min(math.ceil(needed / 16) * 16, self.dims.n_text_ctx)

    def _generate_rows(
        self,
        batch: _Batch,
        pending: list[int],
        prefixes: list[list[int]],
        tokenizers: list[Tokenizer],
        lengths: list[int],
        audio_frames: list[int],
        temperature: float,
    ) -> list[_Decoded]:
        """Decode the `pending` rows of a batch, padded to a compiled batch size (the rows
        past `pending` repeat its last and are decoded for nothing)."""
        rows = pending + [pending[-1]] * (self._padded(len(pending)) - len(pending))
        order = batch.index[rows]
        encoded_rows = batch.cross[0][0].shape[0]
        same = len(order) == encoded_rows and bool((order == np.arange(encoded_rows)).all())
        return self._generate(
            batch.cross if same else whisper.take_rows(batch.cross, jnp.asarray(order)),
            jnp.asarray(batch.audio_mask[rows]),
            batch.context_s,
            [prefixes[r] for r in rows],
            [tokenizers[r] for r in rows],
            [self._max_new_tokens(lengths[r]) for r in rows],
            [audio_frames[r] for r in rows],
            temperature,
        )[: len(pending)]

    def _generate(
        self, cross, audio_mask, context, prefixes, tokenizers, max_new, audio_frames, temperature
    ) -> list[_Decoded]:
        batch = len(prefixes)
        eot = tokenizers[0].eot
        capacity = self._capacity(context)
        width = self._prefill_width
        tokens = np.full((batch, width), eot, dtype=np.int32)
        for row, prefix in enumerate(prefixes):
            tokens[row, width - len(prefix) :] = prefix
        sot_slots = [width - len(p) + p.index(tokenizers[r].sot) for r, p in enumerate(prefixes)]
        room = capacity - width - 1
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
        alignment = whisper.alignment_matrix(
            out.attention, out.count, jnp.asarray(audio_frames, jnp.int32)
        )
        out, alignment = jax.device_get((out._replace(attention=None), alignment))
        decoded = []
        for row in range(batch):
            count = int(out.count[row])
            generated = [int(t) for t in out.tokens[row, :count]]
            text = tokenizers[row].decode(generated)
            decoded.append(
                _Decoded(
                    tokens=generated,
                    avg_logprob=float(out.logprob_sum[row] / (count + 1)),
                    compression_ratio=compression_ratio(text),
                    no_speech_probability=float(out.no_speech_probability[row]),
                    temperature=temperature,
                    token_probabilities=out.token_probability[row, :count],
                    alignment=alignment[row, : count + 1, : audio_frames[row]],
                )
            )
        return decoded

    # -- word times ----------------------------------------------------------------------------

    def _words(
        self, tokenizer: Tokenizer, decoded: _Decoded, duration_s: float
    ) -> tuple[Word, ...]:
        """Words of the decoded tokens, timed by DTW on the alignment heads' attention."""
        token_starts_s = token_frames(decoded.alignment) / TOKENS_PER_SECOND
        timings = word_timings(
            tokenizer, decoded.tokens, token_starts_s, decoded.token_probabilities
        )
        return window_words(timings, duration_s)[0]


@contextmanager
def _timed(program: str, bucket: float, rows: int) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    if elapsed > SLOW_COMPILE_S:
        logger.info("jax %s for %g s x %d rows ready in %.1f s", program, bucket, rows, elapsed)


def _padded_size(size: int, compiled: tuple[int, ...] | None = None) -> int:
    """The compiled batch size a batch of `size` runs at: the first of `compiled` that holds
    it, or the power of two (a handful of compiled shapes instead of one per size)."""
    power = 1 << (size - 1).bit_length()
    return next((c for c in compiled if c >= size), power) if compiled else power
