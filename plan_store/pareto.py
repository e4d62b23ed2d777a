"""Exact Pareto dominance over evaluated plans."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Bounds the n x block x k comparison tensor (about 30 MB for 10k points and 3 objectives).
_BLOCK = 1024


def non_dominated(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the rows of `points` (n x k) that no other row dominates.

    A row dominates another when it is no worse in every objective and strictly better in one, so rows equal in all
    objectives keep each other on the front. The exhaustive pairwise check is exact with ties and any number of
    objectives, and vectorised it is fast for the hundreds to thousands of plans a store holds.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != len(maximize) or not len(maximize):
        raise ValueError(f"points of shape {pts.shape} do not match {len(maximize)} objectives")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite to be ranked")
    cost = np.where(np.asarray(maximize, dtype=bool), -pts, pts)
    dominated = np.zeros(len(cost), dtype=bool)
    for start in range(0, len(cost), _BLOCK):
        block = cost[start : start + _BLOCK]
        # [j, i]: does point j dominate block point i?
        no_worse = (cost[:, None, :] <= block[None, :, :]).all(axis=2)
        better = (cost[:, None, :] < block[None, :, :]).any(axis=2)
        dominated[start : start + len(block)] = (no_worse & better).any(axis=0)
    return ~dominated
