"""Retrieval metrics of the PRVR protocol: numpy functions over a (queries x videos) score matrix.

Each query has exactly one relevant video. Tie rule (optimistic): a query's rank is
1 + the number of candidates scored STRICTLY higher than its relevant video, so candidates tied
with the relevant one do not push it down. R@K is the percentage of queries with rank <= K;
SumR is the sum of the R@K values.

    m = retrieval_metrics(scores, positive, ks=(1, 5, 10, 100))
    # {"R@1": ..., "R@5": ..., "R@10": ..., "R@100": ..., "SumR": ...}
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def _check_scores(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    positive = np.asarray(positive)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected a 2-D (queries, videos) array, got {scores.shape}")
    if positive.shape != (scores.shape[0],):
        raise ValueError(f"positive: expected shape ({scores.shape[0]},), got {positive.shape}")
    if positive.size and not np.issubdtype(positive.dtype, np.integer):
        raise ValueError(f"positive: expected integer video indices, got dtype {positive.dtype}")
    if positive.size and (positive.min() < 0 or positive.max() >= scores.shape[1]):
        bad = int(positive[(positive < 0) | (positive >= scores.shape[1])][0])
        raise ValueError(f"positive: index {bad} out of range for {scores.shape[1]} videos")
    if np.isnan(scores).any():
        row = int(np.isnan(scores).any(axis=1).argmax())
        raise ValueError(f"scores: NaN in the row of query {row}")
    return scores, positive.astype(np.int64)


def ranks(scores, positive) -> np.ndarray:
    """(Q,) int ranks: 1 + number of videos scored strictly higher than the query's relevant one.

    scores: (Q, V) float; positive: (Q,) int index of each query's relevant video.
    Ties with the relevant video are not counted (optimistic tie rule).
    """
    scores, positive = _check_scores(scores, positive)
    relevant = scores[np.arange(len(positive)), positive]  # (Q,)
    return 1 + (scores > relevant[:, None]).sum(axis=1).astype(np.int64)


def recall_at_k(rank_values, ks: Iterable[int] = (1, 5, 10, 100)) -> dict[str, float]:
    """{"R@k": percentage of queries with rank <= k} for each k (k may exceed the video count)."""
    rank_values = np.asarray(rank_values)
    if rank_values.ndim != 1 or rank_values.size == 0:
        raise ValueError(f"ranks: expected a non-empty 1-D array, got shape {rank_values.shape}")
    ks = tuple(ks)
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks: expected positive integers, got {ks}")
    return {f"R@{int(k)}": float(100.0 * np.mean(rank_values <= k)) for k in ks}


def retrieval_metrics(scores, positive, ks: Iterable[int] = (1, 5, 10, 100)) -> dict[str, float]:
    """R@K for each K and SumR (their sum) from a (Q, V) score matrix and (Q,) relevant indices."""
    recalls = recall_at_k(ranks(scores, positive), ks)
    return {**recalls, "SumR": float(sum(recalls.values()))}
