"""How many real-time sessions an engine can serve, measured with a few batched decodes.

A live session needs about one decode of its buffer per `REFRESH_S` of speech to keep its
commit latency under the 2 s target (two agreeing decodes, `min_step_s` apart). With batches of
up to `max_batch` windows costing t(b) seconds each, S sessions need ceil(S / max_batch)
rounds of t(min(S, max_batch)) per refresh. The measurement uses windows of the bundled speech
sample at a typical buffer length; `bench/serve_capacity.py` checks the figure with real
sessions.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from bot.asr.engine import Engine, Window
from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.messages import SAMPLE_RATE

logger = logging.getLogger(__name__)

REFRESH_S = 1.0
WINDOW_S = 8.0


def measure_capacity(engine: Engine, max_batch: int, limit: int = 256) -> int:
    """The most sessions whose rounds fit in REFRESH_S (at least 1)."""
    audio = load_audio(bundled_sample())
    samples = int(WINDOW_S * SAMPLE_RATE)
    window = Window(audio=np.resize(audio, samples).astype(np.float32), language="en")
    engine.transcribe([window])  # warm-up
    costs: dict[int, float] = {}
    size = 1
    while size <= max_batch:
        started = time.perf_counter()
        engine.transcribe([window] * size)
        costs[size] = time.perf_counter() - started
        if costs[size] > REFRESH_S:
            break
        size *= 2
    best = 1
    for sessions in range(1, limit + 1):
        batch = min(sessions, max_batch)
        measured = max((b for b in costs if b <= batch), default=1)
        # Decode time grows at most linearly with the batch beyond what was measured.
        cost = costs[measured] * batch / measured
        if math.ceil(sessions / max_batch) * cost <= REFRESH_S:
            best = sessions
        else:
            break
    logger.info(
        "capacity: %d real-time sessions (batch cost %s)",
        best,
        ", ".join(f"{b}: {t:.2f} s" for b, t in costs.items()),
    )
    return best
