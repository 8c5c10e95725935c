"""What jax runs on: the devices it sees, the compute types the engine takes, its program cache."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp

from bot.errors import ConfigError

COMPUTE_TYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def compute_type_for(requested: str | None, gpu: bool) -> str:
    """The compute type to run: `requested`, or for None/auto bfloat16 on a GPU and float32 on
    CPU (where XLA's bfloat16 matrix-vector products are slower than float32)."""
    if requested in (None, "auto"):
        return "bfloat16" if gpu else "float32"
    if requested not in COMPUTE_TYPES:
        raise ConfigError(
            f"compute type '{requested}' is not one the jax engine runs: "
            f"use {', '.join(COMPUTE_TYPES)} or auto"
        )
    return requested


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
