"""Word latency statistics of a stream: how long after a word was said it froze or showed.

A word's *commit latency* is `emitted_s - end` (it froze for good), its *first-seen latency*
`first_seen_s - end` (it first appeared, maybe still tentative). Percentiles are numpy's default
(linear interpolation between the closest ranks). Used by the running bot (its summary), by
`captionbot transcribe` (the JSON stats) and by the evaluation (bot.eval.latency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.messages import CommittedWord


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles in seconds; `drift_s` is the last minute's median minus the first minute's."""

    words: int
    p50: float
    p90: float
    p99: float
    max: float
    first_minute_p50: float
    last_minute_p50: float
    drift_s: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def commit_latencies(words: Sequence[CommittedWord]) -> np.ndarray:
    return np.array([w.emitted_s - w.end for w in words], dtype=float)


def first_seen_latencies(words: Sequence[CommittedWord]) -> np.ndarray:
    return np.array([w.first_seen_s - w.end for w in words], dtype=float)


@dataclass(frozen=True)
class LatencyPercentiles:
    """Percentiles in seconds of a set of word latencies (NaN when there are no words)."""

    words: int
    p50: float
    p90: float
    p99: float
    max: float


def percentiles(latencies: np.ndarray) -> LatencyPercentiles:
    if latencies.size == 0:
        nan = float("nan")
        return LatencyPercentiles(0, nan, nan, nan, nan)
    p50, p90, p99 = (float(v) for v in np.percentile(latencies, [50, 90, 99]))
    return LatencyPercentiles(int(latencies.size), p50, p90, p99, float(latencies.max()))


def summarize(words: Sequence[CommittedWord], latencies: np.ndarray) -> LatencySummary:
    if len(words) == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan, nan, nan)
    ends = np.array([w.end for w in words])
    first = latencies[ends <= ends.min() + 60.0]
    last = latencies[ends >= ends.max() - 60.0]
    first_p50, last_p50 = float(np.median(first)), float(np.median(last))
    p = percentiles(latencies)
    return LatencySummary(
        words=p.words,
        p50=p.p50,
        p90=p.p90,
        p99=p.p99,
        max=p.max,
        first_minute_p50=first_p50,
        last_minute_p50=last_p50,
        drift_s=last_p50 - first_p50,
    )


def latency_over_time(
    words: Sequence[CommittedWord], latencies: np.ndarray, bin_s: float = 60.0
) -> list[tuple[float, float, int]]:
    """Median latency per `bin_s` of audio: (bin start, median, word count)."""
    if len(words) == 0:
        return []
    ends = np.array([w.end for w in words])
    rows = []
    for start in np.arange(0.0, ends.max() + 1e-9, bin_s):
        mask = (ends >= start) & (ends < start + bin_s)
        if mask.any():
            rows.append((float(start), float(np.median(latencies[mask])), int(mask.sum())))
    return rows
