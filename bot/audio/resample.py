"""Device audio (any rate, 1-2 channels, float32) to 16 kHz mono float32, chunk by chunk."""

from __future__ import annotations

import av
import numpy as np

from bot.messages import SAMPLE_RATE


class Resampler:
    """Downmixes and resamples a continuous stream (libswresample keeps state across chunks)."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._resampler = (
            None
            if rate == SAMPLE_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )
        self._pts = 0

    def convert(self, samples: np.ndarray) -> np.ndarray:
        """`samples` is frames x channels float32; returns mono 16 kHz float32."""
        mono = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._resampler is None or not mono.size:
            return mono
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += mono.size
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
