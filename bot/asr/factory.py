"""Build the configured engine: resolve the model, choose engine, device and compute type, log why.

`engine: auto` picks, per device, the engine measured faster there: CTranslate2 (on CUDA when
it sees a CUDA device, else on CPU, where it was measured as fast as jax per stream with a
quarter of the memory and a 1 s start, bench/jax_vs_ctranslate2.py). The jax engine runs on a
GPU only when asked for (`engine.name: jax`) until it has been measured there; `auto` picks it
only for a model only it loads (a Hugging Face safetensors checkpoint).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from bot.asr.decoding import DecodeOptions
from bot.asr.engine import Engine
from bot.asr.models import ResolvedModel, resolve_model
from bot.errors import ConfigError
from bot.messages import MIN_CONTEXT_S

if TYPE_CHECKING:
    from bot.config import Config, EngineConfig

logger = logging.getLogger(__name__)

# CTranslate2's compute type per device when the configuration says auto: int8 measured best
# on this CPU (float32 ~5x slower); float16 is faster-whisper's choice on CUDA (int8_float16
# saves memory, not measured here).
CT2_COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}
# CTranslate2 workers on a CPU, at most: each holds a replica sharing the weights (base: +8 MB).
MAX_CPU_WORKERS = 8
# engine.min_context_s "auto": the least encoder context per bundled model, as measured on the
# 41 short English items streamed (captionbot eval): base 5.56% -> 3.90% WER at 15 s (--fast;
# real time 5.71% -> 4.05-4.50%, offline 3.60%); tiny.en gained nothing (4.65% at 0 and 15)
# and read JFK worse at 15, so it and unmeasured models keep the plain trimmed context.
MIN_CONTEXT_S_BY_MODEL = {"base": 15.0}
# engine.translate_beam_size "auto" on ctranslate2: 26 FLEURS de/fr/es/pt items, base, default
# task translate, captionbot eval: chrF 41.23 -> 44.21 / 42.98 (--fast), 41.95 / 42.62 ->
# 44.60 / 43.04 (real time, commit p90 4.76-5.39 -> 3.80-4.18 s, same RTF); offline 46.28.
TRANSLATE_BEAM_SIZE = 5


@dataclass(frozen=True)
class EngineChoice:
    """Which engine runs where, in which number format, and why."""

    engine: Literal["ctranslate2", "jax"]
    device: str  # "cpu" or "cuda" (CTranslate2), "cpu" or "gpu" (jax)
    compute_type: str
    reason: str

    def describe(self) -> str:
        return f"{self.engine} on {self.device}, {self.compute_type}: {self.reason}"


def choose_engine(
    config: EngineConfig,
    model_format: str = "ctranslate2",
    *,
    cuda_devices: int | None = None,
    jax_gpu: bool | None = None,
) -> EngineChoice:
    """The engine for `config` on this machine. `cuda_devices` (what CTranslate2 sees) and
    `jax_gpu` (whether jax sees a GPU) are probed when not given."""
    if config.name == "jax" or (config.name == "auto" and model_format == "safetensors"):
        gpu = _jax_sees_gpu() if jax_gpu is None else jax_gpu
        reason = (
            "asked for (engine.name: jax)"
            if config.name == "jax"
            else "the model is a Hugging Face safetensors checkpoint, which only jax loads"
        )
        return _jax_choice(config, gpu, reason)
    cuda = _ctranslate2_cuda_devices() if cuda_devices is None else cuda_devices
    if config.device == "cuda" and cuda == 0:
        raise ConfigError(
            "engine.device is cuda but CTranslate2 sees no CUDA device; use device auto or cpu"
        )
    device = config.device if config.device != "auto" else ("cuda" if cuda > 0 else "cpu")
    compute_type = (
        CT2_COMPUTE_TYPES[device] if config.compute_type == "auto" else config.compute_type
    )
    _check_ct2_compute_type(compute_type, device)
    if config.name == "ctranslate2":
        reason = "asked for (engine.name: ctranslate2)"
    elif device == "cuda":
        reason = (
            f"CTranslate2 sees {cuda} CUDA device(s); jax runs on a GPU only when asked for "
            "(engine.name: jax) until it is measured there"
        )
    else:
        reason = (
            f"{'engine.device is cpu' if cuda else 'no CUDA device'}; on CPU ctranslate2 int8 "
            "is as fast as jax per stream with a quarter of its memory"
        )
    return EngineChoice("ctranslate2", device, compute_type, reason)


def create_engine(config: EngineConfig, many_sessions: bool = False, max_batch: int = 1) -> Engine:
    """The engine of `config`; `many_sessions` (a service) sizes CTranslate2 for big batches
    and, on a GPU, has jax compile every batch size up to `max_batch` before sessions come."""
    resolved = resolve_model(config.model)
    choice = choose_engine(config, resolved.format)
    logger.info("engine %s", choice.describe())
    logger.info("model %s from %s (%s)", resolved.name, resolved.path, resolved.source)
    engine = _build(config, resolved, choice, many_sessions, max_batch)
    engine.info = replace(engine.info, reason=choice.reason)
    return engine


def create_engine_for(config: Config) -> Engine:
    """The engine of a whole configuration, checked against its task and language up front."""
    engine = create_engine(config.engine)
    engine.check_task(config.task, config.language_or_none)
    return engine


def _build(
    config: EngineConfig,
    resolved: ResolvedModel,
    choice: EngineChoice,
    many_sessions: bool,
    max_batch: int,
) -> Engine:
    options = DecodeOptions(
        beam_size=config.beam_size,
        translate_beam_size=translate_beam_for(config, choice.engine),
        audio_context=config.audio_context,
        min_context_s=min_context_for(config, resolved.name),
    )
    if choice.engine == "jax":
        from bot.asr.jax.engine import JaxEngine

        if config.cpu_threads or config.workers:
            logger.warning(
                "engine.cpu_threads and engine.workers are CTranslate2 settings: the jax "
                "engine uses XLA's threads (set XLA_FLAGS to change them)"
            )
        engine = JaxEngine(
            resolved.path, resolved.name, options=options, compute_type=choice.compute_type
        )
        # Compile before audio flows, not during the first words of a meeting; a service on
        # a GPU compiles every batch size it will use (on CPU the extra programs would cost a
        # minute at start; they compile when a batch first needs them).
        sizes = engine.batch_sizes(max_batch) if many_sessions and choice.device == "gpu" else (1,)
        logger.info("jax programs ready in %.1f s", engine.warm_up(sizes))
        return engine
    from bot.asr.ctranslate2_engine import CTranslate2Engine

    parallelism = ct2_parallelism(config, choice.device, many_sessions=many_sessions)
    return CTranslate2Engine(
        resolved.path,
        resolved.name,
        device=choice.device,
        compute_type=choice.compute_type,
        cpu_threads=parallelism.threads,
        workers=parallelism.workers,
        options=options,
    )


def translate_beam_for(config: EngineConfig, engine: str) -> int:
    """engine.translate_beam_size, "auto" resolved: beam 5 on ctranslate2, greedy on jax
    (which has no beam search)."""
    if config.translate_beam_size != "auto":
        return config.translate_beam_size
    return 1 if engine == "jax" else TRANSLATE_BEAM_SIZE


def min_context_for(config: EngineConfig, model_name: str) -> float:
    """engine.min_context_s, "auto" resolved for the model."""
    if config.min_context_s != "auto":
        return float(config.min_context_s)
    return MIN_CONTEXT_S_BY_MODEL.get(model_name, MIN_CONTEXT_S)


@dataclass(frozen=True)
class Parallelism:
    """How CTranslate2 spreads a batch: `workers` model replicas decode parts of it at once,
    each on `threads` threads (0: CTranslate2's default)."""

    workers: int
    threads: int


def ct2_parallelism(
    config: EngineConfig, device: str, cores: int | None = None, many_sessions: bool = False
) -> Parallelism:
    """Workers and threads for `config` on `device`. Auto (0) on a CPU: a service
    (`many_sessions`) runs one single-thread worker per core, a bot one worker on every core.
    Measured on 2 cores (bench/engine_parallelism.py): a batch split over two 1-thread workers
    decodes in half the time of one 2-thread worker, but a bot's one or two streams gain
    nothing from the split, and a single-thread engine beside Chromium or ffmpeg gets a smaller
    share of the CPU (the kernel shares it per thread). A GPU takes the batch whole."""
    if device != "cpu":
        return Parallelism(config.workers or 1, config.cpu_threads)
    cores = cores or len(os.sched_getaffinity(0))
    if config.workers and config.cpu_threads:
        return Parallelism(config.workers, config.cpu_threads)
    if config.workers:
        return Parallelism(config.workers, max(1, cores // config.workers))
    if config.cpu_threads:
        return Parallelism(max(1, cores // config.cpu_threads), config.cpu_threads)
    if not many_sessions:
        return Parallelism(1, cores)
    return Parallelism(min(cores, MAX_CPU_WORKERS), 1)


def _jax_choice(config: EngineConfig, gpu: bool, reason: str) -> EngineChoice:
    try:
        from bot.asr.jax.device import compute_type_for
    except ImportError as error:
        raise ConfigError(
            f"the jax engine needs jax ({error.name} is not installed): "
            "pip install 'captionbot[gpu]', or use --engine ctranslate2"
        ) from None
    device = "gpu" if gpu else "cpu"
    if config.device == "cuda" and not gpu:
        raise ConfigError("engine.device is cuda but jax sees no GPU; use device auto or cpu")
    if config.device == "cpu" and gpu:
        raise ConfigError(
            "engine.device is cpu but jax runs on the GPU it sees; set JAX_PLATFORMS=cpu, "
            "or use device auto"
        )
    return EngineChoice("jax", device, compute_type_for(config.compute_type, gpu), reason)


def _check_ct2_compute_type(compute_type: str, device: str) -> None:
    import ctranslate2

    try:
        supported = ctranslate2.get_supported_compute_types(device)
    except (RuntimeError, ValueError):
        return  # CTranslate2 cannot tell here; loading the model will say what is wrong
    if compute_type not in supported | {"default", "auto"}:
        raise ConfigError(
            f"compute type '{compute_type}' is not one CTranslate2 runs on {device} here: "
            f"use {', '.join(sorted(supported))} or auto"
        )


def _ctranslate2_cuda_devices() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


def _jax_sees_gpu() -> bool:
    """True when jax is installed with a GPU backend and a GPU is visible."""
    try:
        from bot.asr.jax.device import has_gpu
    except ImportError:
        return False
    return has_gpu()
