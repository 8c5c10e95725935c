"""Whisper weights for the JAX engine: CTranslate2 `model.bin` or Hugging Face safetensors.

Both loaders return the same flat dict of float32 numpy arrays named after CTranslate2's
variables (the layout CTranslate2's `python/ctranslate2/specs/model_spec.py` writes), plus
the model's dimensions. Anything wrong with a file is a one-line ModelNotAvailableError naming it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.errors import ModelNotAvailableError

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
BFLOAT16 = 5


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.offset = 0
        self.path = path

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ModelNotAvailableError(
                f"{self.path} is truncated ({len(self.data)} bytes): download or assemble it again"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        length = self.u16()
        return self.take(length).rstrip(b"\0").decode("utf-8", errors="replace")


def read_ct2_variables(path: Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin (raw dtypes; aliases resolved)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelNotAvailableError(f"cannot read {path}: {error.strerror}") from None
    reader = _Reader(data, path)
    version = reader.u32()
    if version < 5 or version > 6:
        raise ModelNotAvailableError(f"{path}: CTranslate2 binary version {version} unsupported")
    spec = reader.string()
    if spec != "WhisperSpec":
        raise ModelNotAvailableError(f"{path} holds a {spec or 'unknown'} model, not Whisper")
    reader.u32()  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.u32()):
        name = reader.string()
        shape = tuple(reader.u32() for _ in range(reader.u8()))
        dtype_id = reader.u8()
        nbytes = reader.u32()
        raw = reader.take(nbytes)
        if dtype_id == BFLOAT16:
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype_id in DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype_id]).newbyteorder("<"))
        else:
            raise ModelNotAvailableError(f"{path}: variable {name} has unknown dtype {dtype_id}")
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ModelNotAvailableError(f"{path}: variable {name} does not match its shape")
        variables[name] = array.reshape(shape)
    if reader.offset < len(data):
        for _ in range(reader.u32()):
            alias, target = reader.string(), reader.string()
            if target in variables:
                variables[alias] = variables[target]
    return variables


def dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 weights: int8/int16 rows divided by their `<name>_scale`, float16 widened."""
    weights = {}
    for name, array in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(f"{name}_scale")
        if scale is not None and array.dtype in (np.int8, np.int16):
            scale = scale.astype(np.float32).reshape(-1, *([1] * (array.ndim - 1)))
            weights[name] = array.astype(np.float32) / scale
        elif array.dtype.kind == "f":
            weights[name] = array.astype(np.float32)
        else:
            weights[name] = array
    return weights


def dimensions_of(weights: dict[str, np.ndarray], path: Path) -> ModelDimensions:
    """Dimensions from the shapes, checking every variable the model needs is there."""
    need(weights, path, "encoder/conv1/weight", "decoder/embeddings/weight")
    conv1 = weights["encoder/conv1/weight"]
    n_audio_state, n_mels = conv1.shape[0], conv1.shape[1]
    vocab, n_text_state = weights["decoder/embeddings/weight"].shape
    n_audio_layer = _count_layers(weights, "encoder")
    n_text_layer = _count_layers(weights, "decoder")
    need(
        weights,
        path,
        "encoder/position_encodings/encodings",
        "decoder/position_encodings/encodings",
    )
    n_audio_ctx = weights["encoder/position_encodings/encodings"].shape[0]
    n_text_ctx = weights["decoder/position_encodings/encodings"].shape[0]
    dims = ModelDimensions(
        n_mels=n_mels,
        n_audio_ctx=n_audio_ctx,
        n_audio_state=n_audio_state,
        n_audio_head=max(1, n_audio_state // 64),
        n_audio_layer=n_audio_layer,
        n_vocab=vocab,
        n_text_ctx=n_text_ctx,
        n_text_state=n_text_state,
        n_text_head=max(1, n_text_state // 64),
        n_text_layer=n_text_layer,
    )
    check_shapes(weights, dims, path)
    return dims


def _count_layers(weights: dict[str, np.ndarray], side: str) -> int:
    count = 0
    while f"{side}/layer_{count}/self_attention/linear_0/weight" in weights:
        count += 1
    if count == 0:
        raise ModelNotAvailableError(f"model has no {side} layers: not a Whisper model?")
    return count


def need(weights: dict[str, np.ndarray], path: Path, *names: str) -> None:
    for name in names:
        if name not in weights:
            raise ModelNotAvailableError(f"{path}: variable {name} is missing")


def expected_shapes(dims: ModelDimensions) -> dict[str, tuple[int, ...]]:
    a, t = dims.n_audio_state, dims.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder/conv1/weight": (a, dims.n_mels, 3),
        "encoder/conv2/weight": (a, a, 3),
        "encoder/layer_norm/gamma": (a,),
        "decoder/layer_norm/gamma": (t,),
        "decoder/embeddings/weight": (dims.n_vocab, t),
    }
    for i in range(dims.n_audio_layer):
        p = f"encoder/layer_{i}"
        shapes[f"{p}/self_attention/linear_0/weight"] = (3 * a, a)
        shapes[f"{p}/self_attention/linear_1/weight"] = (a, a)
        shapes[f"{p}/ffn/linear_0/weight"] = (4 * a, a)
        shapes[f"{p}/ffn/linear_1/weight"] = (a, 4 * a)
    for i in range(dims.n_text_layer):
        p = f"decoder/layer_{i}"
        shapes[f"{p}/self_attention/linear_0/weight"] = (3 * t, t)
        shapes[f"{p}/self_attention/linear_1/weight"] = (t, t)
        shapes[f"{p}/attention/linear_0/weight"] = (t, t)
        shapes[f"{p}/attention/linear_1/weight"] = (2 * t, a)
        shapes[f"{p}/attention/linear_2/weight"] = (t, t)
        shapes[f"{p}/ffn/linear_0/weight"] = (4 * t, t)
        shapes[f"{p}/ffn/linear_1/weight"] = (t, 4 * t)
    return shapes


def check_shapes(weights: dict[str, np.ndarray], dims: ModelDimensions, path: Path) -> None:
    for name, shape in expected_shapes(dims).items():
        if name not in weights:
            raise ModelNotAvailableError(f"{path}: variable {name} is missing")
        if tuple(weights[name].shape) != shape:
            raise ModelNotAvailableError(
                f"{path}: variable {name} has shape {tuple(weights[name].shape)}, expected {shape}"
            )


def load_ct2(model_dir: Path) -> tuple[dict[str, np.ndarray], ModelDimensions]:
    path = Path(model_dir) / "model.bin"
    weights = dequantize(read_ct2_variables(path))
    return weights, dimensions_of(weights, path)


# -- Hugging Face ----------------------------------------------------------------------------------

_HF_LAYER = {
    "self_attn.out_proj": "self_attention/linear_1",
    "self_attn_layer_norm": "self_attention/layer_norm",
    "encoder_attn.q_proj": "attention/linear_0",
    "encoder_attn.out_proj": "attention/linear_2",
    "encoder_attn_layer_norm": "attention/layer_norm",
    "fc1": "ffn/linear_0",
    "fc2": "ffn/linear_1",
    "final_layer_norm": "ffn/layer_norm",
}


def load_safetensors(model_dir: Path) -> tuple[dict[str, np.ndarray], ModelDimensions]:
    """A Hugging Face Whisper checkpoint (`model.safetensors` + `config.json`), renamed."""
    from safetensors.numpy import load_file

    path = Path(model_dir) / "model.safetensors"
    try:
        hf = {k.removeprefix("model."): v for k, v in load_file(str(path)).items()}
    except Exception as error:  # safetensors raises its own errors for damaged files
        raise ModelNotAvailableError(f"cannot read {path}: {error}") from None
    out: dict[str, np.ndarray] = {}

    def f32(name: str) -> np.ndarray:
        if name not in hf:
            raise ModelNotAvailableError(f"{path}: tensor {name} is missing")
        return np.asarray(hf[name], dtype=np.float32)

    for side in ("encoder", "decoder"):
        if side == "encoder":
            for conv in ("conv1", "conv2"):
                out[f"encoder/{conv}/weight"] = f32(f"encoder.{conv}.weight")
                out[f"encoder/{conv}/bias"] = f32(f"encoder.{conv}.bias")
            out["encoder/position_encodings/encodings"] = f32("encoder.embed_positions.weight")
        else:
            out["decoder/embeddings/weight"] = f32("decoder.embed_tokens.weight")
            out["decoder/position_encodings/encodings"] = f32("decoder.embed_positions.weight")
        out[f"{side}/layer_norm/gamma"] = f32(f"{side}.layer_norm.weight")
        out[f"{side}/layer_norm/beta"] = f32(f"{side}.layer_norm.bias")
        i = 0
        while f"{side}.layers.{i}.fc1.weight" in hf:
            src, dst = f"{side}.layers.{i}", f"{side}/layer_{i}"
            q, k, v = (f32(f"{src}.self_attn.{n}_proj.weight") for n in "qkv")
            out[f"{dst}/self_attention/linear_0/weight"] = np.concatenate([q, k, v])
            out[f"{dst}/self_attention/linear_0/bias"] = np.concatenate(
                [
                    f32(f"{src}.self_attn.q_proj.bias"),
                    np.zeros(len(k), np.float32),
                    f32(f"{src}.self_attn.v_proj.bias"),
                ]
            )
            if side == "decoder":
                k2, v2 = (
                    f32(f"{src}.encoder_attn.k_proj.weight"),
                    f32(f"{src}.encoder_attn.v_proj.weight"),
                )
                out[f"{dst}/attention/linear_1/weight"] = np.concatenate([k2, v2])
                out[f"{dst}/attention/linear_1/bias"] = np.concatenate(
                    [np.zeros(len(k2), np.float32), f32(f"{src}.encoder_attn.v_proj.bias")]
                )
            for hf_name, ct2_name in _HF_LAYER.items():
                if f"{src}.{hf_name}.weight" not in hf:
                    continue
                norm = "layer_norm" in ct2_name
                out[f"{dst}/{ct2_name}/{'gamma' if norm else 'weight'}"] = f32(
                    f"{src}.{hf_name}.weight"
                )
                if f"{src}.{hf_name}.bias" in hf:
                    out[f"{dst}/{ct2_name}/{'beta' if norm else 'bias'}"] = f32(
                        f"{src}.{hf_name}.bias"
                    )
            i += 1
    return out, dimensions_of(out, path)


def load_weights(model_dir: Path) -> tuple[dict[str, np.ndarray], ModelDimensions]:
    """The weights of a model folder: model.bin (CTranslate2) or model.safetensors (HF)."""
    model_dir = Path(model_dir)
    if (model_dir / "model.bin").is_file():
        return load_ct2(model_dir)
    if (model_dir / "model.safetensors").is_file():
        return load_safetensors(model_dir)
    raise ModelNotAvailableError(
        f"{model_dir} has neither model.bin (CTranslate2) nor model.safetensors (Hugging Face)"
    )


def alignment_heads(model_dir: Path, dims: ModelDimensions) -> list[tuple[int, int]]:
    """(layer, head) pairs whose cross-attention follows the speech, from config.json
    (CTranslate2) or generation_config.json (Hugging Face); the upper half of the decoder's
    heads when neither says (as openai/whisper does)."""
    for name in ("config.json", "generation_config.json"):
        config_path = Path(model_dir) / name
        if not config_path.is_file():
            continue
        try:
            heads = json.loads(config_path.read_text()).get("alignment_heads")
        except ValueError:
            heads = None
        if heads:
            return [(int(layer), int(head)) for layer, head in heads]
    half = dims.n_text_layer // 2
    return [
        (layer, head)
        for layer in range(half, dims.n_text_layer)
        for head in range(dims.n_text_head)
    ]
