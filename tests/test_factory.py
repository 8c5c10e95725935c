"""Choosing the engine: `auto` per device, and options an engine cannot honour refused."""

from __future__ import annotations

import pytest

from bot.asr.factory import (
    EngineChoice,
    Parallelism,
    choose_engine,
    create_engine,
    ct2_parallelism,
    translate_beam_for,
)
from bot.config import EngineConfig
from bot.errors import ConfigError


def test_auto_on_this_cpu_machine_is_ctranslate2_int8_and_says_why() -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device: the CPU choice is not what auto makes here")
    choice = choose_engine(EngineConfig())
    assert (choice.engine, choice.device, choice.compute_type) == ("ctranslate2", "cpu", "int8")
    assert "no CUDA device" in choice.reason
    assert choice.describe().startswith("ctranslate2 on cpu, int8: ")


def test_auto_with_a_cuda_device_is_ctranslate2_in_float16_not_jax() -> None:
    choice = choose_engine(EngineConfig(), cuda_devices=1, jax_gpu=True)
    assert (choice.engine, choice.device, choice.compute_type) == ("ctranslate2", "cuda", "float16")
    assert "engine.name: jax" in choice.reason


def test_jax_is_used_on_a_gpu_when_asked_for_in_bfloat16() -> None:
    choice = choose_engine(EngineConfig(name="jax"), jax_gpu=True)
    assert choice == EngineChoice("jax", "gpu", "bfloat16", "asked for (engine.name: jax)")
    on_cpu = choose_engine(EngineConfig(name="jax"), jax_gpu=False)
    assert (on_cpu.device, on_cpu.compute_type) == ("cpu", "float32")


def test_auto_picks_jax_for_a_model_only_jax_loads() -> None:
    choice = choose_engine(EngineConfig(), "safetensors", jax_gpu=False)
    assert choice.engine == "jax" and "safetensors" in choice.reason


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (EngineConfig(name="jax", compute_type="int8"), "compute type 'int8' is not one the jax"),
        (EngineConfig(compute_type="float16"), "compute type 'float16' is not one CTranslate2"),
        (EngineConfig(device="cuda"), "CTranslate2 sees no CUDA device"),
        (EngineConfig(name="jax", device="cuda"), "jax sees no GPU"),
    ],
)
def test_what_an_engine_cannot_do_here_is_one_line(config: EngineConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        choose_engine(config, cuda_devices=0, jax_gpu=False)
    assert "\n" not in str(error.value)


def test_the_jax_engine_refuses_a_beam_it_cannot_search() -> None:
    with pytest.raises(ConfigError, match="decodes greedily; beam size 5"):
        create_engine(EngineConfig(model="tiny.en", name="jax", beam_size=5))


def test_translation_beam_is_five_on_ctranslate2_and_greedy_on_jax_unless_set() -> None:
    assert translate_beam_for(EngineConfig(), "ctranslate2") == 5
    assert translate_beam_for(EngineConfig(), "jax") == 1
    assert translate_beam_for(EngineConfig(translate_beam_size=2), "ctranslate2") == 2
    with pytest.raises(
        ConfigError, match="engine.translate_beam_size 5 needs --engine ctranslate2"
    ):
        create_engine(EngineConfig(model="tiny.en", name="jax", translate_beam_size=5))
    for bad in (0, 11, "five", True):
        with pytest.raises(ValueError, match="use auto or a beam size from 1 to 10"):
            EngineConfig(translate_beam_size=bad)


def test_the_engine_info_carries_the_choice_and_the_offline_reference() -> None:
    engine = create_engine(EngineConfig(model="tiny.en", name="ctranslate2", cpu_threads=1))
    assert engine.info.reason == "asked for (engine.name: ctranslate2)"
    assert engine.info.describe() == (
        "ctranslate2 on cpu, int8, model tiny.en: asked for (engine.name: ctranslate2)"
    )
    assert "faster-whisper transcribe, beam 5" in engine.info.details["offline_reference"]


@pytest.mark.parametrize(
    ("workers", "threads", "device", "many_sessions", "expected"),
    [
        (0, 0, "cpu", True, Parallelism(2, 1)),  # a service: a single-thread worker per core
        (0, 0, "cpu", False, Parallelism(1, 2)),  # a bot: one worker on every core
        (1, 0, "cpu", True, Parallelism(1, 2)),
        (0, 2, "cpu", True, Parallelism(1, 2)),
        (3, 1, "cpu", False, Parallelism(3, 1)),
        (0, 0, "cuda", True, Parallelism(1, 0)),  # a GPU takes the batch whole
    ],
)
def test_ctranslate2_workers_and_threads(workers, threads, device, many_sessions, expected) -> None:
    config = EngineConfig(workers=workers, cpu_threads=threads)
    found = ct2_parallelism(config, device, cores=2, many_sessions=many_sessions)
    assert found == expected


def test_auto_uses_one_worker_per_core_up_to_a_cap() -> None:
    assert ct2_parallelism(EngineConfig(), "cpu", cores=32, many_sessions=True) == Parallelism(8, 1)
