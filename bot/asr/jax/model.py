"""Whisper in JAX: encoder, decoder with a key/value cache, greedy decoding in one program.

Parameters are a plain pytree built from the flat CTranslate2-named weights. Linear weights are
stored pre-transposed ([in, out]), the output projection too (tied with the token embedding).
Per-layer tensors (cross-attention keys/values, the self-attention cache) travel as tuples of
per-layer arrays: slicing one layer out of a stacked array copies it on XLA:CPU, which cost more
than the whole decoder step.

Shapes are static per call (audio length and batch size are bucketed by the caller), so each
jitted function compiles once per bucket. `generate` runs the whole token loop on the device
(`lax.while_loop`): no host round trip per token, and the alignment heads' cross-attention of
every generated token is kept for word timing, so no second, teacher-forced pass is needed.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bot.asr.jax.weights import ModelDimensions

Params = dict[str, Any]
# Per decoder layer, (keys, values) [B, H, T, Dh]: the audio's (cross) or the text's (cache).
LayerKV = tuple[tuple[jnp.ndarray, jnp.ndarray], ...]
Alignment = tuple[tuple[int, int], ...]  # (layer, head) pairs whose attention follows the speech

_MASKED = -1e9
N_FFT = 400
HOP_LENGTH = 160


def build_params(
    weights: dict[str, np.ndarray], dims: ModelDimensions, dtype=jnp.float32
) -> Params:
    """The pytree the jitted functions take, from CTranslate2-named float32 weights."""

    def a(name: str) -> jnp.ndarray:
        return jnp.asarray(weights[name], dtype=dtype)

    def linear(prefix: str) -> dict[str, jnp.ndarray]:
        w = weights[f"{prefix}/weight"]
        b = weights.get(f"{prefix}/bias")
        return {
            "w": jnp.asarray(w.T, dtype=dtype),
            "b": jnp.asarray(b if b is not None else np.zeros(w.shape[0], np.float32), dtype=dtype),
        }

    def norm(prefix: str) -> dict[str, jnp.ndarray]:
        return {"g": a(f"{prefix}/gamma"), "b": a(f"{prefix}/beta")}

    encoder_layers = []
    for i in range(dims.n_audio_layer):
        p = f"encoder/layer_{i}"
        encoder_layers.append(
            {
                "ln1": norm(f"{p}/self_attention/layer_norm"),
                "qkv": linear(f"{p}/self_attention/linear_0"),
                "out": linear(f"{p}/self_attention/linear_1"),
                "ln2": norm(f"{p}/ffn/layer_norm"),
                "fc1": linear(f"{p}/ffn/linear_0"),
                "fc2": linear(f"{p}/ffn/linear_1"),
            }
        )
    decoder_layers = []
    for i in range(dims.n_text_layer):
        p = f"decoder/layer_{i}"
        decoder_layers.append(
            {
                "ln1": norm(f"{p}/self_attention/layer_norm"),
                "qkv": linear(f"{p}/self_attention/linear_0"),
                "out": linear(f"{p}/self_attention/linear_1"),
                "ln2": norm(f"{p}/attention/layer_norm"),
                "cq": linear(f"{p}/attention/linear_0"),
                "ckv": linear(f"{p}/attention/linear_1"),
                "cout": linear(f"{p}/attention/linear_2"),
                "ln3": norm(f"{p}/ffn/layer_norm"),
                "fc1": linear(f"{p}/ffn/linear_0"),
                "fc2": linear(f"{p}/ffn/linear_1"),
            }
        )
    embedding = weights["decoder/embeddings/weight"]
    return {
        "encoder": {
            "conv1_w": a("encoder/conv1/weight"),
            "conv1_b": a("encoder/conv1/bias"),
            "conv2_w": a("encoder/conv2/weight"),
            "conv2_b": a("encoder/conv2/bias"),
            "pos": a("encoder/position_encodings/encodings"),
            "layers": encoder_layers,
            "ln": norm("encoder/layer_norm"),
        },
        "decoder": {
            "embedding": jnp.asarray(embedding, dtype=dtype),
            "projection": jnp.asarray(embedding.T, dtype=dtype),
            "pos": a("decoder/position_encodings/encodings"),
            "layers": decoder_layers,
            "ln": norm("decoder/layer_norm"),
        },
    }


def _norm(p: dict[str, jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def _linear(p: dict[str, jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    return x @ p["w"] + p["b"]


def _heads(x: jnp.ndarray, n_head: int) -> jnp.ndarray:
    """[B, T, D] → [B, H, T, D/H]"""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)


def _merge(x: jnp.ndarray) -> jnp.ndarray:
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def _attend(q, k, v, mask=None):
    """q [B,H,S,Dh], k/v [B,H,T,Dh], mask broadcastable to [B,H,S,T] → out, weights [B,H,S,T].

    Softmax in float32 whatever the compute type (bfloat16 on a GPU)."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bhsd,bhtd->bhst", q, k, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, _MASKED)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhst,bhtd->bhsd", weights.astype(v.dtype), v), weights


def _conv1d(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray, stride: int) -> jnp.ndarray:
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding=((1, 1),), dimension_numbers=("NCH", "OIH", "NCH")
    )
    return out + b[None, :, None]


def _encoder(params: Params, mel: jnp.ndarray, n_head: int) -> jnp.ndarray:
    """mel [B, n_mels, 2T] → audio features [B, T, D] (T ≤ 1500: variable context)."""
    p = params["encoder"]
    x = jax.nn.gelu(_conv1d(mel, p["conv1_w"], p["conv1_b"], 1), approximate=False)
    x = jax.nn.gelu(_conv1d(x, p["conv2_w"], p["conv2_b"], 2), approximate=False)
    x = x.transpose(0, 2, 1)
    x = x + p["pos"][: x.shape[1]]
    for layer in p["layers"]:
        h = _linear(layer["qkv"], _norm(layer["ln1"], x))
        q, k, v = (_heads(part, n_head) for part in jnp.split(h, 3, axis=-1))
        out, _ = _attend(q, k, v)
        x = x + _linear(layer["out"], _merge(out))
        h = jax.nn.gelu(_linear(layer["fc1"], _norm(layer["ln2"], x)), approximate=False)
        x = x + _linear(layer["fc2"], h)
    return _norm(p["ln"], x)


def _cross_keys_values(params: Params, audio: jnp.ndarray, n_head: int) -> LayerKV:
    out = []
    for layer in params["decoder"]["layers"]:
        k, v = jnp.split(_linear(layer["ckv"], audio), 2, axis=-1)
        out.append((_heads(k, n_head), _heads(v, n_head)))
    return tuple(out)


def _empty_cache(params: Params, batch: int, capacity: int, n_head: int) -> LayerKV:
    d = params["decoder"]["pos"].shape[-1]
    dtype = params["decoder"]["pos"].dtype
    shape = (batch, n_head, capacity, d // n_head)
    return tuple(
        (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in params["decoder"]["layers"]
    )


def _decoder(
    params: Params,
    tokens: jnp.ndarray,
    positions: jnp.ndarray,
    slot: jnp.ndarray | int,
    cache: LayerKV,
    cross: LayerKV,
    visible: jnp.ndarray,
    audio_mask: jnp.ndarray | None,
    n_head: int,
    alignment: Alignment,
) -> tuple[jnp.ndarray, LayerKV, jnp.ndarray]:
    """Tokens [B, S] at embedding positions [B, S], written to cache slots slot..slot+S-1.

    `visible` [B, S, C] says which cache slots each token attends to (causal, and not the
    left padding of a shorter prompt); `audio_mask` [B, T] hides padded audio frames.
    Returns the final hidden states [B, S, D] (after the last layer norm), the updated cache,
    and the alignment heads' cross-attention [B, A, S, T] (float32).
    """
    p = params["decoder"]
    x = p["embedding"][tokens] + p["pos"][positions]
    self_mask = visible[:, None, :, :]
    cross_mask = None if audio_mask is None else audio_mask[:, None, None, :]
    heads_of_layer: dict[int, list[int]] = {}
    for layer_index, head in alignment:
        heads_of_layer.setdefault(layer_index, []).append(head)
    aligned = []
    updated = []
    for i, layer in enumerate(p["layers"]):
        h = _linear(layer["qkv"], _norm(layer["ln1"], x))
        q, k, v = (_heads(part, n_head) for part in jnp.split(h, 3, axis=-1))
        cache_k, cache_v = cache[i]
        cache_k = jax.lax.dynamic_update_slice(cache_k, k, (0, 0, slot, 0))
        cache_v = jax.lax.dynamic_update_slice(cache_v, v, (0, 0, slot, 0))
        updated.append((cache_k, cache_v))
        out, _ = _attend(q, cache_k, cache_v, self_mask)
        x = x + _linear(layer["out"], _merge(out))
        q = _heads(_linear(layer["cq"], _norm(layer["ln2"], x)), n_head)
        out, weights = _attend(q, cross[i][0], cross[i][1], cross_mask)
        aligned += [weights[:, head] for head in heads_of_layer.get(i, [])]
        x = x + _linear(layer["cout"], _merge(out))
        h = jax.nn.gelu(_linear(layer["fc1"], _norm(layer["ln3"], x)), approximate=False)
        x = x + _linear(layer["fc2"], h)
    aligned_weights = jnp.stack(aligned, axis=1) if aligned else jnp.zeros((x.shape[0], 0))
    return _norm(p["ln"], x), tuple(updated), aligned_weights


def _logits(params: Params, hidden: jnp.ndarray) -> jnp.ndarray:
    return jnp.dot(hidden, params["decoder"]["projection"], preferred_element_type=jnp.float32)


def log_mel(audio: jnp.ndarray, mel_filters: jnp.ndarray, window: jnp.ndarray) -> jnp.ndarray:
    """audio [B, S] → log-mel spectrogram [B, n_mels, S / HOP_LENGTH], as faster-whisper's
    FeatureExtractor computes it (centred STFT with reflect padding, last frame dropped, Slaney
    mel filters, log10 floored 8 below each row's maximum), here on the engine's device so a
    batch of windows is one program instead of a numpy pass per window."""
    samples = audio.shape[1]
    padded = jnp.pad(audio, ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    starts = jnp.arange(samples // HOP_LENGTH) * HOP_LENGTH
    frames = padded[:, starts[:, None] + jnp.arange(N_FFT)[None, :]] * window
    power = jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2  # [B, F, N_FFT / 2 + 1]
    mel = jnp.einsum("mf,btf->bmt", mel_filters, power, precision=jax.lax.Precision.HIGHEST)
    log = jnp.log10(jnp.maximum(mel, 1e-10))
    log = jnp.maximum(log, log.max(axis=(1, 2), keepdims=True) - 8.0)
    return (log + 4.0) / 4.0


@partial(jax.jit, static_argnames=("n_audio_head", "n_text_head", "detect", "frames"))
def encode(
    params: Params,
    audio: jnp.ndarray,
    mel_filters: jnp.ndarray,
    window: jnp.ndarray,
    sot: jnp.ndarray,
    language_tokens: jnp.ndarray,
    n_audio_head: int,
    n_text_head: int,
    detect: bool,
    frames: int,
) -> tuple[LayerKV, jnp.ndarray]:
    """audio [B, S] (float32 samples, its silent tail included) → the decoder's cross-attention
    keys/values, zero-padded to `frames` (the decoder's context), and the logits of
    `language_tokens` after the start-of-transcript token [B, n_languages] (zeros when
    `detect` is off: English-only models). Language detection sees only the audio's own
    frames."""
    mel = log_mel(audio, mel_filters, window).astype(params["encoder"]["pos"].dtype)
    audio = _encoder(params, mel, n_audio_head)
    cross = _cross_keys_values(params, audio, n_text_head)
    batch = mel.shape[0]
    pad = ((0, 0), (0, 0), (0, frames - audio.shape[1]), (0, 0))
    padded = tuple((jnp.pad(k, pad), jnp.pad(v, pad)) for k, v in cross)
    if not detect:
        return padded, jnp.zeros((batch, language_tokens.shape[0]), jnp.float32)
    tokens = jnp.full((batch, 1), sot, jnp.int32)
    hidden, _, _ = _decoder(
        params,
        tokens,
        jnp.zeros((batch, 1), jnp.int32),
        0,
        _empty_cache(params, batch, 1, n_text_head),
        cross,
        jnp.ones((batch, 1, 1), bool),
        None,
        n_text_head,
        (),
    )
    return padded, _logits(params, hidden[:, 0])[:, language_tokens]


# stack_rows and take_rows run op by op: as jitted programs they would compile for every
# combination of part sizes a call brings (each bucket's batch), mid-meeting on a GPU.
def stack_rows(rows: tuple[LayerKV, ...]) -> LayerKV:
    """One batch of cross-attention keys/values from batches of the same context."""
    return tuple(
        (
            jnp.concatenate([row[layer][0] for row in rows]),
            jnp.concatenate([row[layer][1] for row in rows]),
        )
        for layer in range(len(rows[0]))
    )


def take_rows(cross: LayerKV, order: jnp.ndarray) -> LayerKV:
    """The rows `order` [B] of a batch of cross-attention keys/values."""
    return tuple((k[order], v[order]) for k, v in cross)


def _median(values: list[jnp.ndarray]) -> jnp.ndarray:
    """Elementwise median of an odd number of arrays, by an odd-even transposition sort (min
    and max only: much faster on XLA:CPU than a sort along a stacked axis)."""
    values = list(values)
    for step in range(len(values)):
        for i in range(step % 2, len(values) - 1, 2):
            low, high = values[i], values[i + 1]
            values[i], values[i + 1] = jnp.minimum(low, high), jnp.maximum(low, high)
    return values[len(values) // 2]


@partial(jax.jit, static_argnames=("filter_width",))
def alignment_matrix(
    attention: jnp.ndarray, counts: jnp.ndarray, audio_frames: jnp.ndarray, filter_width: int = 7
) -> jnp.ndarray:
    """The alignment heads' attention [B, N + 1, A, T] of `generate` → per row the matrix
    [N + 1, T] that word timing's DTW walks, as openai/whisper's timing.py prepares it: each
    head's weights over the row's own `audio_frames` renormalized, standardized over the row's
    `counts[b] + 1` token rows, median-filtered along time (`filter_width` frames, edges
    repeated) and averaged over heads. Rows and frames past a row's own are zero. Runs where
    the attention is, so only this matrix (1/A of it) leaves the device."""
    _, tokens, _, frames = attention.shape
    frame_ok = jnp.arange(frames)[None, :] < audio_frames[:, None]  # [B, T]
    token_ok = jnp.arange(tokens)[None, :] <= counts[:, None]  # [B, N + 1]
    weights = jnp.where(frame_ok[:, None, None, :], attention, 0.0)
    weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-12)
    used = token_ok[:, :, None, None]
    n = jnp.maximum(token_ok.sum(-1), 1)[:, None, None, None]
    mean = jnp.where(used, weights, 0.0).sum(1, keepdims=True) / n
    var = jnp.where(used, (weights - mean) ** 2, 0.0).sum(1, keepdims=True) / n
    weights = (weights - mean) / jnp.maximum(jnp.sqrt(var), 1e-12)
    # Edges repeat: frames past a row's own take its last frame's value, then `half` more
    # copies of the first and last columns pad the array for the window's static slices.
    half = filter_width // 2
    last = jnp.maximum(audio_frames - 1, 0)[:, None, None, None]
    last_column = jnp.take_along_axis(weights, jnp.broadcast_to(last, weights.shape[:3] + (1,)), -1)
    weights = jnp.where(jnp.arange(frames) > last, last_column, weights)
    padded = jnp.pad(weights, ((0, 0), (0, 0), (0, 0), (half, half)), mode="edge")
    window = [padded[..., offset : offset + frames] for offset in range(filter_width)]
    filtered = _median(window)
    matrix = filtered.mean(axis=2)
    return jnp.where(token_ok[:, :, None] & frame_ok[:, None, :], matrix, 0.0)


class Generated(NamedTuple):
    """What `generate` returns per row (arrays with a leading batch axis)."""

    tokens: jnp.ndarray  # [B, N] int32, end-of-text after the row's last token
    count: jnp.ndarray  # [B] tokens generated
    logprob_sum: jnp.ndarray  # [B] sum of the chosen tokens' log-probabilities (and of the end)
    no_speech_probability: jnp.ndarray  # [B]
    token_probability: jnp.ndarray  # [B, N] probability of each token (unsuppressed softmax)
    attention: jnp.ndarray  # [B, N + 1, A, T] alignment heads: no-timestamps token, then tokens


@partial(jax.jit, static_argnames=("n_head", "alignment", "capacity"))
def generate(
    params: Params,
    prefix: jnp.ndarray,
    prefix_lengths: jnp.ndarray,
    sot_slots: jnp.ndarray,
    cross: LayerKV,
    audio_mask: jnp.ndarray,
    max_new: jnp.ndarray,
    suppress: jnp.ndarray,
    eot: jnp.ndarray,
    no_speech: jnp.ndarray,
    temperature: jnp.ndarray,
    key: jnp.ndarray,
    n_head: int,
    alignment: Alignment,
    capacity: int,
) -> Generated:
    """Prefill each row's prompt, then decode greedily (or by sampling at `temperature` > 0)
    until every row has produced end-of-text or `max_new[b]` tokens.

    `prefix` [B, W] is left-padded: row b's tokens fill the last `prefix_lengths[b]` slots, so
    every row writes the same cache slot at each step while its embedding positions start at 0.
    `sot_slots[b]` is the slot of the start-of-transcript token (its logits give the
    no-speech probability). `suppress` [V] marks tokens never generated. At most
    `capacity - W - 1` tokens are generated.
    """
    batch, width = prefix.shape
    steps = capacity - width
    rows = jnp.arange(batch)
    slots = jnp.arange(capacity)
    padding = width - prefix_lengths  # [B]
    valid = slots[None, :] >= padding[:, None]  # [B, C]: not left padding
    prefill_visible = valid[:, None, :] & (slots[None, None, :] <= jnp.arange(width)[None, :, None])
    positions = jnp.maximum(jnp.arange(width)[None, :] - padding[:, None], 0)
    hidden, cache, attention = _decoder(
        params,
        prefix,
        positions,
        0,
        _empty_cache(params, batch, capacity, n_head),
        cross,
        prefill_visible,
        audio_mask,
        n_head,
        alignment,
    )
    at_sot = jax.nn.softmax(_logits(params, hidden[rows, sot_slots]), axis=-1)
    logits = _logits(params, hidden[:, -1])
    frames = audio_mask.shape[1]
    attention_out = jnp.zeros((batch, steps + 1, len(alignment), frames), jnp.float32)
    attention_out = attention_out.at[:, 0].set(attention[:, :, -1])
    vocab = jnp.arange(logits.shape[-1])

    def choose(scores, key):
        return jax.lax.cond(
            temperature > 0,
            lambda: jax.random.categorical(key, scores / jnp.maximum(temperature, 1e-6)),
            lambda: jnp.argmax(scores, axis=-1),
        ).astype(jnp.int32)

    def advance(carry, t, chosen):
        logits, cache, attention_out = carry
        slot = width + t
        visible = (valid & (slots[None, :] <= slot))[:, None, :]
        hidden, cache, attention = _decoder(
            params,
            chosen[:, None],
            (prefix_lengths + t)[:, None],
            slot,
            cache,
            cross,
            visible,
            audio_mask,
            n_head,
            alignment,
        )
        attention_out = jax.lax.dynamic_update_slice(
            attention_out, attention.transpose(0, 2, 1, 3), (0, t + 1, 0, 0)
        )
        return _logits(params, hidden[:, 0]), cache, attention_out

    def body(state):
        t, logits, cache, tokens, probs, attention_out, logprob_sum, count, done, key = state
        key, sample_key = jax.random.split(key)
        scores = jnp.where(suppress[None, :], -jnp.inf, logits)
        scores = jnp.where((t == 0) & (vocab == eot)[None, :], -jnp.inf, scores)
        chosen = choose(scores, sample_key)
        logprobs = scores - jax.nn.logsumexp(scores, axis=-1, keepdims=True)
        raw = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        active = ~done
        finished = active & ((chosen == eot) | (count >= max_new))
        kept = active & ~finished
        logprob_sum = logprob_sum + jnp.where(active, logprobs[rows, chosen], 0.0)
        tokens = tokens.at[:, t].set(jnp.where(kept, chosen, eot))
        probs = probs.at[:, t].set(jnp.exp(raw[rows, chosen]))
        count = count + kept
        done = done | finished
        chosen = jnp.where(done, eot, chosen)
        logits, cache, attention_out = jax.lax.cond(
            done.all(),
            lambda carry: carry,
            lambda carry: advance(carry, t, chosen),
            (logits, cache, attention_out),
        )
        return t + 1, logits, cache, tokens, probs, attention_out, logprob_sum, count, done, key

    def running(state):
        t, done = state[0], state[8]
        return (t < steps) & ~done.all()

    state = (
        jnp.int32(0),
        logits,
        cache,
        jnp.full((batch, steps), eot, jnp.int32),
        jnp.zeros((batch, steps), jnp.float32),
        attention_out,
        jnp.zeros(batch, jnp.float32),
        jnp.zeros(batch, jnp.int32),
        jnp.zeros(batch, bool),
        key,
    )
    _, _, _, tokens, probs, attention_out, logprob_sum, count, _, _ = jax.lax.while_loop(
        running, body, state
    )
    return Generated(
        tokens=tokens,
        count=count,
        logprob_sum=logprob_sum,
        no_speech_probability=at_sot[rows, no_speech],
        token_probability=probs,
        attention=attention_out,
    )
