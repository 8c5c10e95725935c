"""Build the configured engine: resolve the model, pick the backend, log the choice."""

from __future__ import annotations

import logging

from bot.asr.ctranslate2_engine import CTranslate2Engine, DecodeOptions
from bot.asr.engine import Engine
from bot.asr.models import resolve_model
from bot.config import Config, EngineConfig

logger = logging.getLogger(__name__)


def create_engine(config: EngineConfig) -> Engine:
    backend = config.name
    if backend == "auto":
        backend = "jax" if _jax_sees_gpu() else "ctranslate2"
        logger.info(
            "engine auto: %s",
            "jax on the GPU" if backend == "jax" else "ctranslate2 (no GPU visible to jax)",
        )
    resolved = resolve_model(config.model)
    if backend == "jax":
        from bot.asr.jax.engine import COMPUTE_TYPES, JaxEngine

        logger.info("model %s from %s (%s)", resolved.name, resolved.path, resolved.source)
        engine = JaxEngine(
            resolved.path,
            resolved.name,
            options=DecodeOptions(beam_size=1, audio_context=config.audio_context),
            # int8 (the CTranslate2 default) means "the device's best" to the jax engine
            compute_type=config.compute_type if config.compute_type in COMPUTE_TYPES else None,
        )
        # Compile before audio flows, not during the first words of a meeting.
        logger.info("jax programs ready in %.1f s", engine.warm_up())
        return engine
    device = "cpu" if config.device == "auto" else config.device
    logger.info("model %s from %s (%s)", resolved.name, resolved.path, resolved.source)
    return CTranslate2Engine(
        resolved.path,
        resolved.name,
        device=device,
        compute_type=config.compute_type,
        cpu_threads=config.cpu_threads,
        options=DecodeOptions(beam_size=config.beam_size, audio_context=config.audio_context),
    )


def create_engine_for(config: Config) -> Engine:
    """The engine of a whole configuration, checked against its task and language up front."""
    engine = create_engine(config.engine)
    engine.check_task(config.task, config.language_or_none)
    return engine


def _jax_sees_gpu() -> bool:
    """True when jax is installed with a GPU backend and a GPU is visible."""
    try:
        from bot.asr.jax.engine import has_gpu
    except ImportError:
        return False
    return has_gpu()
