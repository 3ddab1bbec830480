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

Two forms of the same rule: settle_near_ties asks an ExactScores for one query's candidates at a time;
settle_near_pairs (and near_pairs + settled, which prvr.evaluation.ranking counts on) asks a
PairScores for every near (query, video) pair at once, so a scorer can read each video once for all
the queries that need it (prvr.evaluation.ranking.PairScorer).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from prvr.config_checks import NEAR_TIE_BAND as NEAR_BAND  # float32 scores this close are recomputed

ROW_ELEMENTS = 1 << 24  # score elements compared at a time (bounds the bool temporaries)

# (query index, candidate video indices) -> their float64 scores, in that order
ExactScores = Callable[[int, np.ndarray], np.ndarray]
# (query indices (P,), video indices (P,)) -> the pairs' float64 scores (P,): many queries in one call
PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


def check_tolerance(tolerance: float, band: float = NEAR_BAND) -> None:
    """ValueError naming eval.tie_tolerance unless 0 <= tolerance < band."""
    if not 0 <= tolerance < band:
        raise ValueError(f"eval.tie_tolerance: expected a value in [0, {band}), got {tolerance}")


def near_pairs(scores: np.ndarray, positive: np.ndarray, band: float = NEAR_BAND) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) (P,) each: near_candidates's (query, video) pairs of every query, in query order."""
    found = list(near_candidates(scores, positive, band))
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return (np.concatenate([np.full(len(c), q, dtype=np.int64) for q, c in found]),
            np.concatenate([c for _, c in found]).astype(np.int64))


def settled(exact: np.ndarray, rows: np.ndarray, cols: np.ndarray, positive: np.ndarray,
            tolerance: float) -> np.ndarray:
    """The near pairs' float64 scores (P,) with those within `tolerance` of their query's relevant
    video set to its score (each query's relevant pair must be among the pairs)."""
    exact = np.asarray(exact, dtype=np.float64)
    if exact.shape != cols.shape:
        raise ValueError(f"exact scores: expected {cols.shape}, got {exact.shape}")
    is_relevant = cols == positive[rows]  # (P,)
    at_relevant = np.zeros(len(positive), dtype=np.float64)
    at_relevant[rows[is_relevant]] = exact[is_relevant]
    relevant = at_relevant[rows]  # (P,)
    close = np.abs(exact - relevant) <= tolerance
    exact = exact.copy()
    exact[close] = relevant[close]
    return exact


def settle_near_pairs(scores: np.ndarray, positive: np.ndarray, pair_scores: PairScores,
                      tolerance: float, band: float = NEAR_BAND) -> int:
    """settle_near_ties with every near candidate of every query recomputed in one pair_scores call
    (a scorer that reads each video once for all the queries that need it). Returns the number of
    queries settled."""
    check_tolerance(tolerance, band)
    rows, cols = near_pairs(scores, positive, band)
    if len(rows):
        scores[rows, cols] = settled(pair_scores(rows, cols), rows, cols, positive, tolerance)
    return len(np.unique(rows))


def settle_near_ties(scores: np.ndarray, positive: np.ndarray, exact_scores: ExactScores,
                     tolerance: float, band: float = NEAR_BAND) -> int:
    """Rewrite, in place, the near-tie scores of every query as the module docstring says.

    scores: (Q, V) float64 (float32 arithmetic); positive: (Q,) relevant video indices. Returns the
    number of queries whose candidates were recomputed."""
    check_tolerance(tolerance, band)
    count = 0
    for query, candidates in list(near_candidates(scores, positive, band)):
        rows = np.full(len(candidates), query, dtype=np.int64)  # (C,)
        scores[query, candidates] = settled(exact_scores(query, candidates), rows, candidates, positive, tolerance)
        count += 1
    return count
