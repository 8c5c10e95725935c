"""The JAX Whisper engine: weights, parity with CTranslate2 on real speech, batching, streaming."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR, english_wer

from bot.asr.engine import Window
from bot.asr.jax.weights import (
    _HF_LAYER,
    dimensions_of,
    load_safetensors,
    load_weights,
    read_ct2_variables,
)
from bot.asr.models import resolve_model
from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.errors import ModelNotAvailableError
from bot.messages import SAMPLE_RATE, AudioChunk, EndOfStream
from bot.streaming.transcriber import StreamingTranscriber

LJ = ["ljspeech_LJ001-0100", "ljspeech_LJ001-0101", "ljspeech_LJ001-0102"]
LONG = "ljspeech_LJ001-0001_0045_long"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you,"
    " ask what you can do for your country."
)
GERMAN_FUNCTION_WORDS = {"und", "der", "die", "das", "ist", "nicht", "ein", "eine", "mit", "von"}
ENGLISH_FUNCTION_WORDS = {"the", "and", "of", "to", "a", "in", "is", "that", "it", "for", "with"}


def _text(hypothesis) -> str:
    return "".join(w.text for w in hypothesis.words).strip()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(bundled_sample())


# -- weights ---------------------------------------------------------------------------------------


def _ct2_string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def test_a_truncated_model_file_is_one_line_naming_it(tmp_path: Path) -> None:
    source = resolve_model("tiny.en").path / "model.bin"
    broken = tmp_path / "model.bin"
    broken.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(ModelNotAvailableError, match="model.bin is truncated"):
        read_ct2_variables(broken)


def test_a_model_file_of_another_spec_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "model.bin"
    other.write_bytes(struct.pack("<I", 6) + _ct2_string("TransformerSpec") + struct.pack("<I", 1))
    with pytest.raises(ModelNotAvailableError, match="TransformerSpec model, not Whisper"):
        read_ct2_variables(other)


def test_missing_or_misshaped_variables_are_named() -> None:
    path = resolve_model("tiny.en").path
    weights, _ = load_weights(path)
    missing = dict(weights)
    del missing["decoder/layer_2/attention/linear_1/weight"]
    with pytest.raises(ModelNotAvailableError, match="decoder/layer_2/attention/linear_1/weight"):
        dimensions_of(missing, path)
    reshaped = dict(weights)
    reshaped["encoder/layer_0/ffn/linear_0/weight"] = np.zeros((10, 10), np.float32)
    with pytest.raises(ModelNotAvailableError, match=r"ffn/linear_0/weight has shape \(10, 10\)"):
        dimensions_of(reshaped, path)


def test_a_hugging_face_checkpoint_maps_onto_the_same_variables(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    d, vocab, mels, rng = 64, 100, 80, np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    tensors = {
        "model.encoder.conv1.weight": r(d, mels, 3),
        "model.encoder.conv1.bias": r(d),
        "model.encoder.conv2.weight": r(d, d, 3),
        "model.encoder.conv2.bias": r(d),
        "model.encoder.embed_positions.weight": r(1500, d),
        "model.encoder.layer_norm.weight": r(d),
        "model.encoder.layer_norm.bias": r(d),
        "model.decoder.embed_tokens.weight": r(vocab, d),
        "model.decoder.embed_positions.weight": r(448, d),
        "model.decoder.layer_norm.weight": r(d),
        "model.decoder.layer_norm.bias": r(d),
    }
    for side in ("encoder", "decoder"):
        p = f"model.{side}.layers.0"
        for proj in ("q", "k", "v", "out"):
            tensors[f"{p}.self_attn.{proj}_proj.weight"] = r(d, d)
            if proj != "k":
                tensors[f"{p}.self_attn.{proj}_proj.bias"] = r(d)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            tensors[f"{p}.{norm}.weight"], tensors[f"{p}.{norm}.bias"] = r(d), r(d)
        tensors[f"{p}.fc1.weight"], tensors[f"{p}.fc1.bias"] = r(4 * d, d), r(4 * d)
        tensors[f"{p}.fc2.weight"], tensors[f"{p}.fc2.bias"] = r(d, 4 * d), r(d)
        if side == "decoder":
            for proj in ("q", "k", "v", "out"):
                tensors[f"{p}.encoder_attn.{proj}_proj.weight"] = r(d, d)
                if proj != "k":
                    tensors[f"{p}.encoder_attn.{proj}_proj.bias"] = r(d)
            n = "encoder_attn_layer_norm"
            tensors[f"{p}.{n}.weight"], tensors[f"{p}.{n}.bias"] = r(d), r(d)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    weights, dims = load_safetensors(tmp_path)
    assert (dims.n_audio_state, dims.n_vocab, dims.n_audio_layer, dims.n_text_layer) == (
        d,
        vocab,
        1,
        1,
    )
    qkv = weights["decoder/layer_0/self_attention/linear_0/weight"]
    assert np.array_equal(qkv[d : 2 * d], tensors["model.decoder.layers.0.self_attn.k_proj.weight"])
    kv = weights["decoder/layer_0/attention/linear_1/weight"]
    assert np.array_equal(kv[d:], tensors["model.decoder.layers.0.encoder_attn.v_proj.weight"])
    assert np.array_equal(
        weights["encoder/layer_0/ffn/layer_norm/gamma"],
        tensors["model.encoder.layers.0.final_layer_norm.weight"],
    )


def test_a_folder_without_weights_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="neither model.bin"):
        load_weights(tmp_path)


def _hugging_face_copy_of_tiny_en(folder: Path) -> Path:
    """tiny.en's CTranslate2 weights written as a Hugging Face checkpoint folder (the inverse
    of load_safetensors' renaming), with the tokenizer and an HF-style config."""
    from safetensors.numpy import save_file

    source = resolve_model("tiny.en").path
    weights, dims = load_weights(source)
    d_audio, d_text = dims.n_audio_state, dims.n_text_state
    hf: dict[str, np.ndarray] = {
        "model.encoder.conv1.weight": weights["encoder/conv1/weight"],
        "model.encoder.conv1.bias": weights["encoder/conv1/bias"],
        "model.encoder.conv2.weight": weights["encoder/conv2/weight"],
        "model.encoder.conv2.bias": weights["encoder/conv2/bias"],
        "model.encoder.embed_positions.weight": weights["encoder/position_encodings/encodings"],
        "model.decoder.embed_tokens.weight": weights["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": weights["decoder/position_encodings/encodings"],
    }
    layers = {"encoder": (dims.n_audio_layer, d_audio), "decoder": (dims.n_text_layer, d_text)}
    for side, (count, d) in layers.items():
        hf[f"model.{side}.layer_norm.weight"] = weights[f"{side}/layer_norm/gamma"]
        hf[f"model.{side}.layer_norm.bias"] = weights[f"{side}/layer_norm/beta"]
        for i in range(count):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            qkv = weights[f"{src}/self_attention/linear_0/weight"]
            qkv_bias = weights[f"{src}/self_attention/linear_0/bias"]
            for j, name in enumerate("qkv"):
                hf[f"{dst}.self_attn.{name}_proj.weight"] = qkv[j * d : (j + 1) * d]
            hf[f"{dst}.self_attn.q_proj.bias"] = qkv_bias[:d]
            hf[f"{dst}.self_attn.v_proj.bias"] = qkv_bias[2 * d :]
            if side == "decoder":
                kv = weights[f"{src}/attention/linear_1/weight"]
                hf[f"{dst}.encoder_attn.k_proj.weight"] = kv[:d]
                hf[f"{dst}.encoder_attn.v_proj.weight"] = kv[d:]
                hf[f"{dst}.encoder_attn.v_proj.bias"] = weights[f"{src}/attention/linear_1/bias"][
                    d:
                ]
            for hf_name, ct2_name in _HF_LAYER.items():
                if f"{src}/{ct2_name}/{'gamma' if 'norm' in ct2_name else 'weight'}" not in weights:
                    continue
                norm = "layer_norm" in ct2_name
                hf[f"{dst}.{hf_name}.weight"] = weights[
                    f"{src}/{ct2_name}/{'gamma' if norm else 'weight'}"
                ]
                hf[f"{dst}.{hf_name}.bias"] = weights[
                    f"{src}/{ct2_name}/{'beta' if norm else 'bias'}"
                ]
    folder.mkdir()
    save_file({k: v.astype(np.float16) for k, v in hf.items()}, str(folder / "model.safetensors"))
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    ct2_config = json.loads((source / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": d_text}))
    heads = {"alignment_heads": ct2_config["alignment_heads"]}
    (folder / "generation_config.json").write_text(json.dumps(heads))
    return folder


def test_a_hugging_face_checkpoint_folder_runs_from_the_model_option(tmp_path, jax_tiny, jfk):
    """--model /path/to/hf-folder: resolved as safetensors, refused by ctranslate2 in one line,
    chosen for jax by auto, and heard exactly as the same weights in CTranslate2's file."""
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    folder = _hugging_face_copy_of_tiny_en(tmp_path / "whisper-tiny.en-hf")
    resolved = resolve_model(str(folder))
    assert (resolved.format, resolved.multilingual) == ("safetensors", False)
    with pytest.raises(ModelNotAvailableError, match="needs a CTranslate2 model") as error:
        create_engine(EngineConfig(model=str(folder), name="ctranslate2"))
    assert "\n" not in str(error.value)
    engine = create_engine(EngineConfig(model=str(folder)))
    assert engine.info.name == "jax" and "safetensors" in engine.info.reason
    window = [Window(jfk, "transcribe", "en")]
    (ours,), (theirs,) = engine.transcribe(window), jax_tiny.transcribe(window)
    assert ours.words == theirs.words and english_wer(JFK_TEXT, _text(ours)) < 0.15


# -- transcription ---------------------------------------------------------------------------------


def test_same_transcript_as_ctranslate2_on_jfk_and_lj_speech(jax_tiny, tiny_engine, jfk, load_item):
    audios = [jfk] + [load_item(item)[0] for item in LJ]
    for audio in audios:
        window = [Window(audio, "transcribe", "en")]
        ours, theirs = (
            _text(jax_tiny.transcribe(window)[0]),
            _text(tiny_engine.transcribe(window)[0]),
        )
        assert english_wer(theirs, ours) <= 0.02, (ours, theirs)


def test_word_times_follow_the_speech(jax_tiny, jfk) -> None:
    (hypothesis,) = jax_tiny.transcribe([Window(jfk, "transcribe", "en")])
    starts = [w.start for w in hypothesis.words]
    assert starts == sorted(starts)
    assert hypothesis.words[0].start < 1.0 and 9.5 < hypothesis.words[-1].end <= 11.1
    country = [w for w in hypothesis.words if "country" in w.text]
    assert country and 5.0 < country[0].start < 7.0


# A window cut mid-sentence that tiny.en decodes greedily: cut at 4 s it loops ("ask ask
# ..."), and a loop is decoded again by sampling, which is random per call, so a batch and
# a window alone can only be compared on windows decoded greedily.
JFK_CUT_S = 5


def test_batched_results_equal_unbatched(jax_tiny, jfk, load_item) -> None:
    windows = [
        Window(jfk, "transcribe", "en"),
        Window(load_item(LJ[0])[0], "transcribe", "en", "The printing of books"),
        Window(jfk[: JFK_CUT_S * SAMPLE_RATE], "transcribe", "en"),
    ]
    batched = [_text(h) for h in jax_tiny.transcribe(windows)]
    alone = [_text(jax_tiny.transcribe([w])[0]) for w in windows]
    assert batched == alone


def test_windows_of_one_bucket_encoded_as_one_batch_decode_as_alone(jax_tiny, jfk, load_item):
    """The GPU path (windows of a bucket encoded in one program, padded to a compiled size),
    run here on CPU: the same words at the same times as each window encoded alone. (Batched
    matrix products round differently, about 1e-5: a window cut mid-word, whose greedy
    choice is a near tie, can go either way; these are whole utterances.)"""
    from bot.asr.jax.engine import JaxEngine

    together = JaxEngine(resolve_model("tiny.en").path, "tiny.en", encode_rows=4)
    windows = [
        Window(jfk, "transcribe", "en"),
        Window(load_item(LJ[0])[0], "transcribe", "en", "The printing of books"),
        Window(jfk[: JFK_CUT_S * SAMPLE_RATE], "transcribe", "en"),
        Window(load_item(LJ[1])[0], "transcribe", "en"),
        Window(load_item(LJ[2])[0], "transcribe", "en"),
    ]
    batched = together.transcribe(windows)
    alone = [jax_tiny.transcribe([w])[0] for w in windows]
    for ours, theirs in zip(batched, alone):
        assert _text(ours) == _text(theirs)
        assert [round(w.start, 2) for w in ours.words] == [round(w.start, 2) for w in theirs.words]


def test_the_log_mel_computed_on_the_device_is_faster_whispers(jfk) -> None:
    import jax.numpy as jnp
    from faster_whisper.feature_extractor import FeatureExtractor

    from bot.asr.jax import model

    padded = np.zeros(15 * SAMPLE_RATE, np.float32)
    padded[: len(jfk)] = jfk
    features = FeatureExtractor(feature_size=80)
    expected = features(padded, padding=0)[:, : len(padded) // features.hop_length]
    window = jnp.asarray(np.hanning(model.N_FFT + 1)[:-1], jnp.float32)
    ours = np.asarray(model.log_mel(jnp.asarray(padded[None]), features.mel_filters, window))[0]
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-3


def _alignment_reference(attention: np.ndarray, frames: int) -> np.ndarray:
    """openai/whisper's timing.py on one row's [tokens, heads, all frames] attention."""
    from scipy.ndimage import median_filter

    weights = attention.transpose(1, 0, 2)[:, :, :frames].astype(np.float64)
    weights = weights / weights.sum(-1, keepdims=True)
    mean, std = weights.mean(axis=1, keepdims=True), weights.std(axis=1, keepdims=True)
    weights = median_filter((weights - mean) / std, size=(1, 1, 7), mode="nearest")
    return weights.mean(axis=0)


def test_the_alignment_matrix_prepared_on_the_device_is_whispers_recipe() -> None:
    """Rows of a batch with their own token counts and audio frames (the rest padding) give
    what openai/whisper's numpy recipe gives on each row alone."""
    import jax.numpy as jnp

    from bot.asr.jax import model

    rng = np.random.default_rng(7)
    logits = rng.normal(size=(3, 12, 4, 250)) * 3
    attention = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    counts, frames = np.array([11, 5, 8]), np.array([250, 140, 3])
    matrix = np.asarray(model.alignment_matrix(jnp.asarray(attention, jnp.float32), counts, frames))
    for row in range(3):
        expected = _alignment_reference(attention[row, : counts[row] + 1], frames[row])
        got = matrix[row, : counts[row] + 1, : frames[row]]
        assert np.allclose(got, expected, atol=2e-4), np.abs(got - expected).max()
        assert not matrix[row, counts[row] + 1 :].any() and not matrix[row, :, frames[row] :].any()


def test_a_short_window_is_encoded_in_a_bucket_of_at_least_min_context_s(jax_tiny) -> None:
    two_seconds, eleven = 2 * SAMPLE_RATE, 11 * SAMPLE_RATE
    saved = jax_tiny.options
    buckets = {}
    try:
        for min_context_s in (0.0, 10.0, 15.0):
            jax_tiny.options = dataclasses.replace(saved, min_context_s=min_context_s)
            buckets[min_context_s] = (jax_tiny.bucket_s(two_seconds), jax_tiny.bucket_s(eleven))
    finally:
        jax_tiny.options = saved
    assert buckets == {0.0: (5.0, 15.0), 10.0: (10.0, 15.0), 15.0: (15.0, 15.0)}


def test_german_speech_is_translated_to_english(jax_base, load_item) -> None:
    audio, row = load_item("fleurs_de_000")
    (hypothesis,) = jax_base.transcribe([Window(audio, "translate", None)])
    words = [w.strip(".,!?\"'").lower() for w in _text(hypothesis).split()]
    assert hypothesis.language == "de"
    assert len(words) >= 10
    assert not any(w in GERMAN_FUNCTION_WORDS for w in words)
    assert sum(w in ENGLISH_FUNCTION_WORDS for w in words) >= 0.2 * len(words)


def test_silence_is_flagged_as_no_speech(jax_tiny) -> None:
    silence = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)
    (hypothesis,) = jax_tiny.transcribe([Window(silence, "transcribe", "en")])
    assert hypothesis.no_speech_probability > 0.5 or not hypothesis.words


def test_the_streaming_core_runs_on_the_jax_engine(jax_tiny, jfk) -> None:
    transcriber = StreamingTranscriber(jax_tiny, clock="audio")
    transcriber.open("m", task="transcribe", language="en")
    updates = []
    step = SAMPLE_RATE // 2
    for i in range(0, len(jfk), step):
        transcriber.feed(AudioChunk("m", jfk[i : i + step], i / SAMPLE_RATE))
        updates += transcriber.step()
    transcriber.feed(EndOfStream("m"))
    while transcriber.active:
        updates += transcriber.step()
    text = "".join(w.text for u in updates for w in u.committed)
    assert updates[-1].final
    assert english_wer(JFK_TEXT, text) < 0.15


def test_the_second_start_reuses_the_compilation_cache(tmp_path: Path) -> None:
    script = (
        "import sys, numpy as np\n"
        "from bot.asr.factory import create_engine\n"
        "from bot.config import EngineConfig\n"
        "from bot.asr.engine import Window\n"
        "e = create_engine(EngineConfig(model='tiny.en', name='jax'))\n"
        "e.transcribe([Window(np.zeros(16000, np.float32), 'transcribe', 'en')])\n"
    )
    env = {"CAPTIONBOT_JAX_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    entries = list(tmp_path.iterdir())
    assert entries, "compiled programs were written to the cache"


def test_bfloat16_decodes_as_float32(jax_tiny, jfk) -> None:
    """The GPU compute type, run on CPU: same words, nearly the same times."""
    from bot.asr.jax.engine import JaxEngine

    half = JaxEngine(resolve_model("tiny.en").path, "tiny.en", compute_type="bfloat16")
    assert half.info.compute_type == "bfloat16"
    window = [Window(jfk, "transcribe", "en")]
    (ours,), (full,) = half.transcribe(window), jax_tiny.transcribe(window)
    assert english_wer(_text(full), _text(ours)) <= 0.05
    starts = [w.start for w in ours.words]
    assert starts == sorted(starts) and abs(ours.words[0].start - full.words[0].start) < 0.3


def test_an_unknown_compute_type_is_one_line() -> None:
    from bot.asr.jax.engine import JaxEngine
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="compute type 'int4'.*float32, bfloat16, float16"):
        JaxEngine(resolve_model("tiny.en").path, "tiny.en", compute_type="int4")


def test_temperature_fallback_samples_only_the_rows_that_need_it(jfk, load_item) -> None:
    """Every decode below log-prob 0 "fails", so speech rows are re-decoded by sampling at 0.4
    and 0.8 (a 2-row batch: silence is not retried) and the most probable result is kept."""
    from bot.asr.decoding import DecodeOptions
    from bot.asr.jax.engine import JaxEngine

    engine = JaxEngine(
        resolve_model("tiny.en").path, "tiny.en", options=DecodeOptions(log_prob_threshold=0.0)
    )
    audio, row = load_item(LJ[1])
    silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    windows = [Window(jfk, "transcribe", "en"), Window(silence), Window(audio, "transcribe", "en")]
    speech, quiet, lj = engine.transcribe(windows)
    assert english_wer(JFK_TEXT, _text(speech)) < 0.15
    assert english_wer(row["text"], _text(lj)) < 0.15
    assert not quiet.words
    assert {speech.temperature, lj.temperature} <= {0.0, 0.4, 0.8}


def test_streaming_after_warm_up_compiles_nothing(load_item) -> None:
    """warm_up() compiles every program a single stream needs, so a meeting never waits for
    XLA: a fresh process streams 30 s of speech (buffers of every length up to the cap, with
    prompts) and the jitted encoder and decoder gain no new shapes."""
    _, row = load_item(LONG)
    long_audio = DATA_DIR / row["audio"]
    script = (
        "import numpy as np\n"
        "from bot.asr.factory import create_engine\n"
        "from bot.asr.jax import model\n"
        "from bot.audio.decode import load_audio\n"
        "from bot.config import EngineConfig\n"
        "from bot.messages import AudioChunk, EndOfStream\n"
        "from bot.streaming.transcriber import StreamingTranscriber\n"
        "e = create_engine(EngineConfig(model='tiny.en', name='jax'))\n"
        "ready = (model.encode._cache_size(), model.generate._cache_size())\n"
        f"audio = load_audio({str(long_audio)!r})[: 30 * 16000]\n"
        "t = StreamingTranscriber(e, clock='audio')\n"
        "t.open('m', task='transcribe', language='en')\n"
        "words = 0\n"
        "for i in range(0, len(audio), 8000):\n"
        "    t.feed(AudioChunk('m', audio[i : i + 8000], i / 16000))\n"
        "    words += sum(len(u.committed) for u in t.step())\n"
        "t.feed(EndOfStream('m'))\n"
        "while t.active:\n"
        "    words += sum(len(u.committed) for u in t.step())\n"
        "after = (model.encode._cache_size(), model.generate._cache_size())\n"
        "print(json.dumps({'ready': ready, 'after': after, 'words': words}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["after"] == counts["ready"], counts
    assert counts["words"] > 60, counts


def test_offline_windows_follow_each_other_without_losing_or_repeating_words(
    jax_tiny, tiny_engine, load_item
) -> None:
    """90 s in 29 s windows, each starting where its predecessor's first dropped word starts:
    the text matches faster-whisper's own long-form transcription and the times run on."""
    audio = load_item(LONG)[0][: 90 * SAMPLE_RATE]
    ours = jax_tiny.transcribe_offline(audio, "transcribe", "en")
    theirs = tiny_engine.transcribe_offline(audio, "transcribe", "en", beam_size=1)
    assert english_wer(theirs.text, ours.text) <= 0.05, (ours.text, theirs.text)
    assert ours.reference.startswith("greedy 29 s windows")  # each says what it compared with
    assert theirs.reference.startswith("faster-whisper transcribe, beam 1")
    starts = [w.start for w in ours.words]
    assert starts == sorted(starts) and starts[0] >= 0 and ours.words[-1].end <= 90.0
    assert len(ours.words) > 150


def test_an_offline_beam_the_jax_engine_cannot_search_is_said_and_logged_once(
    jax_tiny, jfk, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.asr.jax.engine"):
        first = jax_tiny.transcribe_offline(jfk, "transcribe", "en", beam_size=5)
        second = jax_tiny.transcribe_offline(jfk, "transcribe", "en", beam_size=5)
    assert "beam 5 asked: the jax engine has no beam search" in first.reference
    assert second.text == first.text and english_wer(JFK_TEXT, first.text) < 0.15
    assert sum("decoded greedily" in r.getMessage() for r in caplog.records) == 1
