"""Whisper in JAX: encoder, decoder with a key/value cache, cross-attention for word timing.

Parameters are a plain pytree built from the flat CTranslate2-named weights. Linear weights are
stored pre-transposed ([in, out]), the output projection too (tied with the token embedding).
Shapes are static per call (audio and text lengths are bucketed by the caller) so each jitted
function compiles once per bucket.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bot.asr.jax.weights import ModelDimensions

Params = dict[str, Any]


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
    """q [B,H,S,Dh], k/v [B,H,T,Dh] → out [B,H,S,Dh], weights [B,H,S,T]."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bhsd,bhtd->bhst", q, k) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, -1e9)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhst,bhtd->bhsd", weights, v), weights


def _conv1d(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray, stride: int) -> jnp.ndarray:
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding=((1, 1),), dimension_numbers=("NCH", "OIH", "NCH")
    )
    return out + b[None, :, None]


@partial(jax.jit, static_argnames=("n_head",))
def encode(params: Params, mel: jnp.ndarray, n_head: int) -> jnp.ndarray:
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


@partial(jax.jit, static_argnames=("n_head",))
def cross_keys_values(params: Params, audio: jnp.ndarray, n_head: int):
    """Per decoder layer, the cross-attention keys and values of the audio: [L, B, H, T, Dh]."""
    ks, vs = [], []
    for layer in params["decoder"]["layers"]:
        kv = _linear(layer["ckv"], audio)
        k, v = jnp.split(kv, 2, axis=-1)
        ks.append(_heads(k, n_head))
        vs.append(_heads(v, n_head))
    return jnp.stack(ks), jnp.stack(vs)


@partial(jax.jit, static_argnames=("n_head",), donate_argnames=("cache_k", "cache_v"))
def decode(
    params: Params,
    tokens: jnp.ndarray,
    offsets: jnp.ndarray,
    cache_k: jnp.ndarray,
    cache_v: jnp.ndarray,
    cross_k: jnp.ndarray,
    cross_v: jnp.ndarray,
    audio_mask: jnp.ndarray,
    n_head: int,
):
    """Run tokens [B, S] placed at positions offsets[b] + 0..S-1 through the decoder.

    cache_k/v [L, B, C, H, Dh] hold earlier positions; they are updated in place (donated)
    and returned. audio_mask [B, T] hides padded audio frames. Returns logits [B, S, V], the
    caches, and the cross-attention weights of every layer [L, B, H, S, T] (for word timing).
    """
    p = params["decoder"]
    batch, steps = tokens.shape
    capacity = cache_k.shape[2]
    positions = offsets[:, None] + jnp.arange(steps)[None, :]  # [B, S]
    x = p["embedding"][tokens] + p["pos"][positions]
    # causal over the cache: a token sees every position up to its own
    visible = jnp.arange(capacity)[None, None, :] <= positions[:, :, None]  # [B, S, C]
    self_mask = visible[:, None, :, :]
    cross_mask = audio_mask[:, None, None, :]
    rows = jnp.arange(batch)[:, None]
    scale = (x.shape[-1] // n_head) ** -0.5
    cross_weights = []
    for i, layer in enumerate(p["layers"]):
        h = _linear(layer["qkv"], _norm(layer["ln1"], x))
        q, k, v = jnp.split(h, 3, axis=-1)
        k = k.reshape(batch, steps, n_head, -1)
        v = v.reshape(batch, steps, n_head, -1)
        cache_k = cache_k.at[i, rows, positions].set(k)
        cache_v = cache_v.at[i, rows, positions].set(v)
        q = _heads(q, n_head)
        logits = jnp.einsum("bhsd,bchd->bhsc", q, cache_k[i]) * scale
        weights = jax.nn.softmax(jnp.where(self_mask, logits, -1e9), axis=-1)
        out = jnp.einsum("bhsc,bchd->bhsd", weights, cache_v[i])
        x = x + _linear(layer["out"], _merge(out))
        q = _heads(_linear(layer["cq"], _norm(layer["ln2"], x)), n_head)
        out, weights = _attend(q, cross_k[i], cross_v[i], cross_mask)
        cross_weights.append(weights)
        x = x + _linear(layer["cout"], _merge(out))
        h = jax.nn.gelu(_linear(layer["fc1"], _norm(layer["ln3"], x)), approximate=False)
        x = x + _linear(layer["fc2"], h)
    logits = _norm(p["ln"], x) @ p["projection"]
    return logits, cache_k, cache_v, jnp.stack(cross_weights)
