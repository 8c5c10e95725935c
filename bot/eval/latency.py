"""Word latency of a streamed transcript: how long after a word was said it froze or showed.

A word's *commit latency* is `emitted_s - end` (it froze for good), its *first-seen latency*
`first_seen_s - end` (it first appeared, maybe still tentative). Percentiles are numpy's default
(linear interpolation between the closest ranks). Per item: `item_latency`; over a whole
dataset: `pooled_latency`, the percentiles of all words of all items together (so long items
weigh by their words, not one vote per item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.messages import CommittedWord
from bot.outputs.stats import (
    LatencyPercentiles,
    LatencySummary,
    commit_latencies,
    first_seen_latencies,
    latency_over_time,
    percentiles,
    summarize,
)


@dataclass(frozen=True)
class ItemLatency:
    """One transcript's latencies: commit and first-seen summaries, commit median per minute."""

    commit: LatencySummary
    first_seen: LatencySummary
    commit_per_minute: tuple[tuple[float, float, int], ...]


def item_latency(words: Sequence[CommittedWord]) -> ItemLatency:
    commit = commit_latencies(words)
    return ItemLatency(
        commit=summarize(words, commit),
        first_seen=summarize(words, first_seen_latencies(words)),
        commit_per_minute=tuple(latency_over_time(words, commit)),
    )


def pooled_latency(
    word_lists: Iterable[Sequence[CommittedWord]],
    latencies_of: Callable[[Sequence[CommittedWord]], np.ndarray] = commit_latencies,
) -> LatencyPercentiles:
    """Percentiles over all words of all items (`latencies_of`: commit or first-seen)."""
    arrays = [latencies_of(words) for words in word_lists]
    return percentiles(np.concatenate(arrays) if arrays else np.array([], dtype=float))
