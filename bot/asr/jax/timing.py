"""Word times from the alignment heads' cross-attention, by dynamic time warping.

As openai/whisper's timing.py: the alignment heads' attention, normalized, median-filtered
along time and averaged over heads (`model.alignment_matrix`, on the device), and here the
monotonic token→frame path of highest attention through it.
"""

from __future__ import annotations

import numpy as np

TOKENS_PER_SECOND = 50  # encoder frames per second


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through `cost` [tokens, frames]: (token indices, frame indices).

    Steps are diagonal, down (next token, same frame) or right (same token, next frame), ties
    broken in that order, as openai/whisper's. A row is computed at once: with a[j] the best of
    the cells above and above-left, total[j] = cost[j] + min(a[j], total[j - 1]) unrolls to
    C[j] + min over k <= j of (a[k] - C[k - 1]), C the running sum of the row's cost.
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    for i in range(1, n + 1):
        diagonal, up = total[i - 1, :-1], total[i - 1, 1:]
        running = np.cumsum(cost[i - 1], dtype=np.float64)
        before = np.concatenate(([0.0], running[:-1]))
        total[i, 1:] = running + np.minimum.accumulate(np.minimum(diagonal, up) - before)
        left = total[i, :-1]
        trace[i, 1:] = np.where(
            (diagonal <= up) & (diagonal <= left), 0, np.where(up <= left, 1, 2)
        )
    i, j = n, m
    tokens, frames = [], []
    while i > 0 and j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(tokens[::-1]), np.array(frames[::-1])


def token_frames(matrix: np.ndarray) -> np.ndarray:
    """Per token row of `matrix` [tokens, frames] (`model.alignment_matrix` of one row, cut
    to its tokens and audio frames), the frame where the DTW path enters it (seconds =
    frame / 50)."""
    token_index, frame_index = dtw(-matrix.astype(np.float64))
    jumps = np.pad(np.diff(token_index), (1, 0), constant_values=1).astype(bool)
    return frame_index[jumps]
