"""Build the configured engine: resolve the model, pick the backend, log the choice."""

from __future__ import annotations

import logging

from bot.asr.ctranslate2_engine import CTranslate2Engine, DecodeOptions
from bot.asr.engine import Engine
from bot.asr.models import resolve_model
from bot.config import Config, EngineConfig
from bot.errors import ConfigError

logger = logging.getLogger(__name__)


def create_engine(config: EngineConfig) -> Engine:
    backend = config.name
    if backend == "auto":
        backend = "ctranslate2"
        logger.info("engine auto: using ctranslate2 (CPU)")
    if backend == "jax":
        raise ConfigError("engine 'jax' is not available in this build: use --engine ctranslate2")
    resolved = resolve_model(config.model)
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
