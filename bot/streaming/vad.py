"""Streaming voice activity detection with the Silero VAD model that faster-whisper ships.

The ONNX model reads 32 ms frames (512 samples plus 64 samples of context) and carries an LSTM
state from call to call, so feeding it chunk by chunk gives the same probabilities as one pass
over the whole recording. One `SileroModel` (the ONNX session) serves every stream; each stream
keeps its own `SpeechDetector` with its state and its recent frame probabilities.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

from bot.messages import SAMPLE_RATE

FRAME = 512
CONTEXT = 64
FRAME_S = FRAME / SAMPLE_RATE


class SileroModel:
    """The shared ONNX session; stateless, so any number of detectors can use it."""

    def __init__(self) -> None:
        self._session = get_vad_model().session

    def run(
        self, rows: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probabilities, h, c = self._session.run(None, {"input": rows, "h": h, "c": c})
        return probabilities.reshape(-1), h, c


class SpeechDetector:
    """Per-stream speech probabilities on the stream's audio timeline, with hysteresis.

    A frame is speech when its probability reaches `threshold`; speech continues until the
    probability falls below `threshold - 0.15` (Silero's recommended hysteresis).
    """

    def __init__(self, model: SileroModel, threshold: float = 0.5, start: float = 0.0) -> None:
        self._model = model
        self._on = threshold
        self._off = max(threshold - 0.15, 0.01)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._leftover = np.zeros(0, dtype=np.float32)
        self._origin = start  # audio time of frame 0 of `_speech`
        self._speech = np.zeros(0, dtype=bool)
        self._in_speech = False

    @property
    def end(self) -> float:
        """Audio time up to which frames have been classified."""
        return self._origin + len(self._speech) * FRAME_S

    def push(self, samples: np.ndarray) -> None:
        audio = np.concatenate([self._leftover, samples.astype(np.float32, copy=False)])
        whole = len(audio) // FRAME * FRAME
        self._leftover = audio[whole:]
        if whole == 0:
            return
        frames = audio[:whole].reshape(-1, FRAME)
        contexts = np.vstack([self._context[None], frames[:-1, -CONTEXT:]])
        self._context = frames[-1, -CONTEXT:].copy()
        rows = np.ascontiguousarray(np.hstack([contexts, frames]))
        probabilities, self._h, self._c = self._model.run(rows, self._h, self._c)
        flags = np.empty(len(probabilities), dtype=bool)
        in_speech = self._in_speech
        for i, p in enumerate(probabilities):
            in_speech = p >= self._on if not in_speech else p >= self._off
            flags[i] = in_speech
        self._in_speech = bool(in_speech)
        self._speech = np.concatenate([self._speech, flags])

    def has_speech(self, start: float, end: float) -> bool:
        first, last = self._index(start), self._index(end)
        return bool(self._speech[first:last].any())

    def speech_s(self, start: float, end: float) -> float:
        """Seconds of speech between `start` and `end`."""
        return float(self._speech[self._index(start) : self._index(end)].sum()) * FRAME_S

    def first_speech_after(self, time: float) -> float | None:
        """Audio time where speech next starts at or after `time` (None if not yet heard)."""
        indices = np.flatnonzero(self._speech[self._index(time) :])
        if len(indices) == 0:
            return None
        return self._origin + (self._index(time) + indices[0]) * FRAME_S

    def speech_start_before(self, end: float, amount: float) -> float:
        """The latest time with `amount` seconds of speech between it and `end` (-inf if
        there is not that much speech)."""
        speech = np.flatnonzero(self._speech[: self._index(end)])
        need = max(int(np.ceil(amount / FRAME_S)), 1)
        if len(speech) < need:
            return float("-inf")
        return self._origin + speech[-need] * FRAME_S

    def last_speech_end(self) -> float | None:
        """Audio time where the most recent speech ended (None if no speech is known)."""
        indices = np.flatnonzero(self._speech)
        if len(indices) == 0:
            return None
        return self._origin + (indices[-1] + 1) * FRAME_S

    def silence_at_end(self) -> float:
        """How long the classified audio has been silent (0 while speech goes on)."""
        last = self.last_speech_end()
        return self.end - (self._origin if last is None else last)

    def forget_before(self, time: float) -> None:
        """Drop frames older than `time`, keeping memory flat over long meetings."""
        drop = min(self._index(time), len(self._speech))
        if drop > 0:
            self._speech = self._speech[drop:]
            self._origin += drop * FRAME_S

    def _index(self, time: float) -> int:
        return max(0, int(round((time - self._origin) / FRAME_S)))
