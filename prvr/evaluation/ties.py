"""Ties that do not depend on where a pair was scored: near ties recomputed in float64, one tolerance.

A float32 matrix product rounds a (query, video) product differently at different places in a block
(a kernel's edge tiles, the CPU's instruction set), so two copies of one video can score a few ulps
apart in one chunking and exactly equal in another: a tie, which the tie rule exists to treat fairly,
would become an arbitrary strict order that moves with chunk sizes and CPUs. So, for each query:

    near(q)  = { v : |s[q, v] - s[q, p]| <= NEAR_BAND }            (p: the relevant video; float32 scores)
    exact    = the same score function on (q, near(q)) in float64, from the same encodings
    s[q, v]  = exact[v] for v in near(q), and exact[p] for every v with |exact[v] - exact[p]| <= tolerance

then the metrics compare exactly (prvr.evaluation.metrics). A candidate outside the band stays on its
float32 score: it is NEAR_BAND away from the relevant one, far more than float32 rounding (~1e-7 on
cosines), so its order against the relevant video is the same in either arithmetic. What remains is a
property of the encodings alone: copies of a video encoded to the same numbers tie whatever the
chunking, and scores closer than `tolerance` (config eval.tie_tolerance, absolute; scores are cosines,
at most 1 in magnitude) count as tied.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from prvr.config_checks import NEAR_TIE_BAND as NEAR_BAND  # float32 scores this close are recomputed

ROW_ELEMENTS = 1 << 24  # score elements compared at a time (bounds the bool temporaries)

# (query index, candidate video indices) -> their float64 scores, in that order
ExactScores = Callable[[int, np.ndarray], np.ndarray]


def near_candidates(scores: np.ndarray, positive: np.ndarray, band: float = NEAR_BAND):
    """Yield (query, candidates): the videos (the relevant one included) within `band` of the
    relevant video's score, for each query that has at least one besides the relevant one."""
    n_queries, n_videos = scores.shape
    rows = max(1, ROW_ELEMENTS // max(n_videos, 1))
    for start in range(0, n_queries, rows):
        block = scores[start:start + rows]                                    # (B, V)
        relevant = block[np.arange(len(block)), positive[start:start + rows]]  # (B,)
        near = np.abs(block - relevant[:, None]) <= band                      # (B, V)
        for offset in np.flatnonzero(near.sum(axis=1) > 1):
            yield start + int(offset), np.flatnonzero(near[offset])


def settle_near_ties(scores: np.ndarray, positive: np.ndarray, exact_scores: ExactScores,
                     tolerance: float, band: float = NEAR_BAND) -> int:
    """Rewrite, in place, the near-tie scores of every query as the module docstring says.

    scores: (Q, V) float64 (float32 arithmetic); positive: (Q,) relevant video indices. Returns the
    number of queries whose candidates were recomputed."""
    if not 0 <= tolerance < band:
        raise ValueError(f"eval.tie_tolerance: expected a value in [0, {band}), got {tolerance}")
    settled = 0
    for query, candidates in list(near_candidates(scores, positive, band)):
        exact = np.asarray(exact_scores(query, candidates), dtype=np.float64)  # (C,)
        if exact.shape != candidates.shape:
            raise ValueError(f"exact scores: expected {candidates.shape}, got {exact.shape}")
        relevant = exact[candidates == positive[query]][0]
        exact[np.abs(exact - relevant) <= tolerance] = relevant
        scores[query, candidates] = exact
        settled += 1
    return settled
