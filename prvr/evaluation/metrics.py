"""Retrieval metrics of the PRVR protocol: numpy functions over a (queries x videos) score matrix.

Each query has exactly one relevant video. For each query, `rank_counts` gives h, the number of
candidates scored STRICTLY higher than its relevant video, and t, the number scored exactly the same
(the relevant video itself excluded). The tie rule (config `eval.ties`) says where the relevant video
lands among its t tied candidates:

    optimistic   rank = 1 + h            (ties never push it down: a collapsed model, all scores
                                          equal, gets R@K = 100 for every K)
    pessimistic  rank = 1 + h + t        (every tied candidate comes first)
    expected     ties broken uniformly at random, averaged exactly (no sampling): the rank is
                 1 + h + U with U uniform on {0, ..., t}, so
                 P(rank <= K) = clip((K - h) / (t + 1), 0, 1)   and its mean rank is 1 + h + t / 2.
                 A collapsed model gets chance level, R@K = 100 * K / V.  (default)

R@K is the percentage of queries with rank <= K (for "expected": 100 x the mean over queries of
P(rank <= K)); SumR is the sum of the R@K values. With no ties the three rules agree.

    m = retrieval_metrics(scores, positive, ks=(1, 5, 10, 100), ties="expected")
    # {"R@1": ..., "R@5": ..., "R@10": ..., "R@100": ..., "SumR": ..., "queries_with_ties": 3}

`queries_with_ties` (an int, not a recall) counts the queries whose relevant video has at least one
tied candidate, i.e. those on which the rules can disagree.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

TIE_RULES = ("expected", "optimistic", "pessimistic")
# rows of the (Q, V) comparisons are done this many score elements at a time (bounds the bool temporaries)
MAX_CHUNK_ELEMENTS = 1 << 24


def check_ties(ties: str) -> str:
    """The tie rule itself, or a ValueError naming the config key eval.ties."""
    if ties not in TIE_RULES:
        raise ValueError(f"eval.ties: expected one of {', '.join(TIE_RULES)}, got {ties!r}")
    return ties


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


def rank_counts(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    """(higher, tied): two (Q,) int64 arrays, per query the number of candidates scored strictly
    higher than its relevant video and the number scored equal to it (the relevant one excluded).

    scores: (Q, V) float; positive: (Q,) int index of each query's relevant video.
    Rows are compared in chunks of about MAX_CHUNK_ELEMENTS scores.
    """
    scores, positive = _check_scores(scores, positive)
    n_queries, n_videos = scores.shape
    higher = np.zeros(n_queries, dtype=np.int64)
    tied = np.zeros(n_queries, dtype=np.int64)
    rows = max(1, MAX_CHUNK_ELEMENTS // max(n_videos, 1))
    for start in range(0, n_queries, rows):
        block = scores[start:start + rows]                                   # (B, V)
        relevant = block[np.arange(len(block)), positive[start:start + rows]][:, None]  # (B, 1)
        higher[start:start + rows] = (block > relevant).sum(axis=1)
        tied[start:start + rows] = (block == relevant).sum(axis=1) - 1       # minus the relevant itself
    return higher, tied


def ranks(scores, positive, ties: str = "expected") -> np.ndarray:
    """(Q,) ranks of each query's relevant video (1 = top) under the tie rule:
    optimistic 1 + h and pessimistic 1 + h + t (int64); expected the mean rank 1 + h + t / 2
    (float64; for R@K use `recall_at_k`, which averages P(rank <= K), not this mean rank).
    """
    higher, tied = rank_counts(scores, positive)
    rule = check_ties(ties)
    if rule == "optimistic":
        return 1 + higher
    if rule == "pessimistic":
        return 1 + higher + tied
    return 1 + higher + tied / 2.0


def hit_probability(higher, tied, k: int, ties: str = "expected") -> np.ndarray:
    """(Q,) float64: P(rank <= k) per query; 0 or 1 except under "expected" with ties."""
    higher, tied = np.asarray(higher), np.asarray(tied)
    rule = check_ties(ties)
    if rule == "optimistic":
        return (1 + higher <= k).astype(np.float64)
    if rule == "pessimistic":
        return (1 + higher + tied <= k).astype(np.float64)
    return np.clip((k - higher) / (tied + 1.0), 0.0, 1.0)


def recall_at_k(higher, tied, ks: Iterable[int] = (1, 5, 10, 100), ties: str = "expected") -> dict[str, float]:
    """{"R@k": 100 x mean over queries of P(rank <= k)} for each k (k may exceed the video count).

    higher, tied: the (Q,) counts of `rank_counts`.
    """
    higher, tied = np.asarray(higher), np.asarray(tied)
    if higher.ndim != 1 or higher.size == 0:
        raise ValueError(f"higher: expected a non-empty 1-D array, got shape {higher.shape}")
    if tied.shape != higher.shape:
        raise ValueError(f"tied: expected shape {higher.shape}, got {tied.shape}")
    ks = tuple(ks)
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks: expected positive integers, got {ks}")
    return {f"R@{int(k)}": float(100.0 * np.mean(hit_probability(higher, tied, int(k), ties))) for k in ks}


def retrieval_metrics(scores, positive, ks: Iterable[int] = (1, 5, 10, 100),
                      ties: str = "expected") -> dict[str, float | int]:
    """R@K for each K, SumR (their sum) and queries_with_ties (int: queries whose relevant video has
    at least one tied candidate) from a (Q, V) score matrix and (Q,) relevant indices."""
    check_ties(ties)
    higher, tied = rank_counts(scores, positive)
    return metrics_from_counts(higher, tied, ks, ties)


def metrics_from_counts(higher, tied, ks: Iterable[int] = (1, 5, 10, 100),
                        ties: str = "expected") -> dict[str, float | int]:
    """retrieval_metrics from rank_counts's (Q,) counts (higher, tied)."""
    recalls = recall_at_k(higher, tied, ks, ties)
    return {**recalls, "SumR": float(sum(recalls.values())), "queries_with_ties": int(np.count_nonzero(tied))}
