"""Semantic-collapse diagnostics for PRVR: pure numpy functions over embeddings and boolean relations.

"Semantic collapse" (Mitigating Semantic Collapse in Partially Relevant Video Retrieval) has three faces,
and each function below puts a number on one of them (all computed in float64):

- moment_contrast (video side): the frame tokens inside a query's moment should be more alike than
  inside-vs-outside pairs. "within" is the mean cosine among inside tokens, "between" the mean cosine of
  inside to outside tokens, "contrast" = within - between. Collapsed frame tokens give contrast -> 0.
- localization (video side): does the token a query scores highest lie in the query's moment? "hit_rate"
  (tied maxima count fractionally) against "chance" (the fraction of overlapping tokens). Collapse brings
  hit_rate down to chance.
- relation_percentile (text side / cross-video): where related items (e.g. captions of the same video that
  describe different events) sit in an anchor's similarity ranking: 0.5 = no closer than a random item,
  1 = nearest, 0 = farthest. Text collapse drives the sibling percentile -> 1; for "similar event,
  other video" relations a low percentile means similar semantics were pushed apart.
- structure_correlation: Spearman correlation of the pairwise cosine structure of a student embedding
  with that of a teacher (e.g. a frozen text encoder); collapse destroys the structure and lowers it.

Example:
    out = moment_contrast(tokens, inside)        # tokens (Q, N, H), inside (Q, N) bool
    # {"within": 0.81, "between": 0.62, "contrast": 0.19, "n_queries": 9843.0}
    relation_percentile(cosine_matrix(text, text), same_video & ~same_event)["percentile"]
"""
from __future__ import annotations

import numpy as np

_CHUNK_BYTES = 256 * 2**20  # memory budget of one chunk of rows / queries (tests shrink it)


def _as_float(x, name: str, ndim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {x.shape}")
    return x


def _as_mask(x, name: str, shape: tuple) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {x.shape}")
    if x.dtype != bool and not (np.issubdtype(x.dtype, np.integer) and np.isin(x, (0, 1)).all()):
        raise ValueError(f"{name}: expected a boolean (or 0/1) array, got dtype {x.dtype}")
    return x.astype(bool, copy=False)


def _raise_at(bad: np.ndarray, name: str, what: str, ids: np.ndarray | None) -> None:
    """ValueError naming the first True position of bad (its first axis mapped through ids)."""
    where = [int(i[0]) for i in np.nonzero(bad)]
    if ids is not None:
        where[0] = int(ids[where[0]])
    raise ValueError(f"{name}: {what} at row {tuple(where) if len(where) > 1 else where[0]}")


def _row_norms(x: np.ndarray, name: str, ids: np.ndarray | None = None) -> np.ndarray:
    """(...,) Euclidean norms over the last axis; NaN/inf or zero-norm rows -> ValueError.

    A NaN/inf entry makes its row's norm non-finite, so checking the norms checks the values too.
    ids: original indices of x's first axis when x is a chunk (for the error message).
    """
    norms = np.linalg.norm(x, axis=-1)  # (...,)
    if not np.isfinite(norms).all():
        _raise_at(~np.isfinite(norms), name, "NaN or inf", ids)
    if (norms == 0).any():
        _raise_at(norms == 0, name, "zero-norm vector", ids)
    return norms


def cosine_matrix(a, b) -> np.ndarray:
    """(N, M) cosine similarities between the rows of a (N, H) and b (M, H)."""
    a, b = _as_float(a, "a", 2), _as_float(b, "b", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"b: expected {a.shape[1]} columns like a, got {b.shape[1]}")
    return (a / _row_norms(a, "a")[:, None]) @ (b / _row_norms(b, "b")[:, None]).T  # (N, M)


def moment_contrast(tokens, inside) -> dict[str, float]:
    """Mean within-moment, inside-to-outside and contrast cosines over queries (see module doc).

    tokens (Q, N, H): the frame tokens of each query's own video; inside (Q, N) bool: token in the moment.
    Only queries with >= 2 inside tokens and >= 1 outside token count; none -> NaN and n_queries 0.
    """
    tokens = np.asarray(tokens)  # (Q, N, H), converted to float64 chunk by chunk
    if tokens.ndim != 3:
        raise ValueError(f"tokens: expected a 3-D (Q, N, H) array, got shape {tokens.shape}")
    n_queries, n_tokens, dim = tokens.shape
    inside = _as_mask(inside, "inside", (n_queries, n_tokens))
    n_in = inside.sum(axis=1)  # (Q,)
    used = (n_in >= 2) & (n_tokens - n_in >= 1)  # (Q,)
    within, between = [], []
    used_ids = np.flatnonzero(used)  # (Q_used,)
    chunk = max(1, _CHUNK_BYTES // (2 * 8 * max(1, n_tokens * dim)))
    for start in range(0, used_ids.size, chunk):
        rows = used_ids[start:start + chunk]  # (C,)
        block = np.asarray(tokens[rows], dtype=np.float64)  # (C, N, H)
        inverse_norm = 1.0 / _row_norms(block, "tokens", rows)  # (C, N)
        mask = inside[rows].astype(np.float64)  # (C, N)
        # sums of the unit tokens inside / outside the moment, without building the unit tokens
        sum_in = np.einsum("cn,cnh->ch", mask * inverse_norm, block)  # (C, H)
        sum_out = np.einsum("cn,cnh->ch", (1.0 - mask) * inverse_norm, block)  # (C, H)
        k_in = mask.sum(axis=1)  # (C,)
        # sum over ordered pairs i != j inside of u_i.u_j = |sum u_i|^2 - sum |u_i|^2 (unit rows)
        within.append(((sum_in**2).sum(axis=1) - k_in) / (k_in * (k_in - 1)))
        between.append((sum_in * sum_out).sum(axis=1) / (k_in * (n_tokens - k_in)))
    if not within:
        return {"within": float("nan"), "between": float("nan"), "contrast": float("nan"), "n_queries": 0.0}
    within_q, between_q = np.concatenate(within), np.concatenate(between)  # (Q_used,)
    return {"within": float(within_q.mean()), "between": float(between_q.mean()),
            "contrast": float((within_q - between_q).mean()), "n_queries": float(within_q.size)}


def localization(scores, overlap) -> dict[str, float]:
    """Hit rate of each query's top-scored token(s) in its moment, and the chance level.

    scores (Q, N): query-to-token similarity; overlap (Q, N) bool. A query's hit is the fraction of its
    tied maxima that overlap (expected hit under random tie-breaking); chance is overlap's row mean.
    """
    scores = _as_float(scores, "scores", 2)
    if scores.size == 0:
        raise ValueError(f"scores: expected a non-empty (Q, N) array, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"scores: NaN in row {int(np.isnan(scores).any(axis=1).argmax())}")
    overlap = _as_mask(overlap, "overlap", scores.shape)
    top = scores == scores.max(axis=1, keepdims=True)  # (Q, N) tied maxima
    hit = (top & overlap).sum(axis=1) / top.sum(axis=1)  # (Q,)
    return {"hit_rate": float(hit.mean()), "chance": float(overlap.mean(axis=1).mean())}


def _tie_runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last position of the run of equal values each entry of sorted rows belongs to."""
    n = sorted_values.shape[-1]
    position = np.broadcast_to(np.arange(n), sorted_values.shape)  # (..., n)
    change = sorted_values[..., 1:] != sorted_values[..., :-1]  # (..., n - 1)
    edge = np.ones(sorted_values.shape[:-1] + (1,), dtype=bool)  # (..., 1)
    starts = np.concatenate([edge, change], axis=-1)  # (..., n)
    ends = np.concatenate([change, edge], axis=-1)  # (..., n)
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[..., ::-1], axis=-1)[..., ::-1]
    return first, last


def _less_and_equal_counts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of each row: how many entries of its row are smaller, and how many equal (itself too)."""
    order = np.argsort(rows, axis=-1)  # (C, Q)
    first, last = _tie_runs(np.take_along_axis(rows, order, axis=-1))  # (C, Q) each
    less, equal = np.empty_like(order), np.empty_like(order)
    np.put_along_axis(less, order, first, axis=-1)
    np.put_along_axis(equal, order, last - first + 1, axis=-1)
    return less, equal


SPARSE_RELATED = 16  # related items per anchor up to which a chunk counts them by comparison, not by sorting rows


def _related_counts(block: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """_less_and_equal_counts of block (C, Q) where rel (C, Q) is True (elsewhere: 0). With at most
    SPARSE_RELATED related items per anchor (captions of the same video: a few) each is compared with
    its anchor's row, O(C Q k), instead of sorting every row, O(C Q log Q); the same integers."""
    n_rel = rel.sum(axis=1)  # (C,)
    width = int(n_rel.max())
    if width > SPARSE_RELATED:
        return _less_and_equal_counts(block)
    rows, cols = np.nonzero(rel)  # (P,) each, anchor by anchor
    slot = np.arange(rows.size) - np.repeat(np.cumsum(n_rel) - n_rel, n_rel)  # (P,) place among its anchor's
    values = np.full((len(block), width), np.nan)  # (C, k) NaN compares False: padding counts nothing
    values[rows, slot] = block[rows, cols]
    less, equal = np.zeros(block.shape, dtype=np.int64), np.zeros(block.shape, dtype=np.int64)
    less[rows, cols] = (block[:, None, :] < values[:, :, None]).sum(axis=-1)[rows, slot]
    equal[rows, cols] = (block[:, None, :] == values[:, :, None]).sum(axis=-1)[rows, slot]
    return less, equal


def relation_percentile(sim, related) -> dict[str, float]:
    """Mean percentile of related items in their anchor's similarity ranking (see module doc).

    sim (Q, Q): similarities; related (Q, Q) bool, diagonal ignored. Per related pair (q, j), among the
    Q - 2 other items k: (#{sim[q,k] < sim[q,j]} + 0.5 #{sim[q,k] == sim[q,j]}) / (Q - 2); averaged over
    each anchor's related items, then over anchors (those with >= 1 related item). No anchor -> NaN, 0.
    """
    sim = _as_float(sim, "sim", 2)
    if sim.shape[0] != sim.shape[1] or sim.shape[0] < 3:
        raise ValueError(f"sim: expected a square (Q, Q) array with Q >= 3, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError(f"sim: NaN or inf in row {int((~np.isfinite(sim)).any(axis=1).argmax())}")
    n = sim.shape[0]
    related = _as_mask(related, "related", sim.shape)
    anchor_pct = []
    chunk = max(1, _CHUNK_BYTES // (12 * 8 * n))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))  # (C,)
        rel = related[rows].copy()  # (C, Q)
        rel[np.arange(rows.size), rows] = False
        if not rel.any():
            continue
        block = sim[rows]  # (C, Q)
        less, equal = _related_counts(block, rel)  # (C, Q) each, counts include k = q and k = j
        diag = block[np.arange(rows.size), rows][:, None]  # (C, 1) self-similarity, excluded below
        less = less - (diag < block)
        equal = equal - 1 - (diag == block)
        pct = (less + 0.5 * equal) / (n - 2)  # (C, Q)
        n_rel = rel.sum(axis=1)  # (C,)
        keep = n_rel > 0
        anchor_pct.append(np.where(rel, pct, 0.0).sum(axis=1)[keep] / n_rel[keep])
    if not anchor_pct:
        return {"percentile": float("nan"), "n_anchors": 0.0}
    pct_q = np.concatenate(anchor_pct)  # (anchors,)
    return {"percentile": float(pct_q.mean()), "n_anchors": float(pct_q.size)}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-D ranks starting at 0, ties get the mean of their positions."""
    order = np.argsort(values)
    first, last = _tie_runs(values[order])
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = 0.5 * (first + last)
    return ranks


def structure_correlation(student, teacher, max_items: int = 2000, seed: int = 0) -> float:
    """Spearman correlation between the pairwise (i < j) cosines of student (Q, H) and teacher (Q, D).

    Q > max_items: a fixed random subset of max_items rows (seeded) is used. NaN if either side has
    all pairwise cosines equal (the correlation is undefined).
    """
    student, teacher = _as_float(student, "student", 2), _as_float(teacher, "teacher", 2)
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher: expected {student.shape[0]} rows like student, got {teacher.shape[0]}")
    if student.shape[0] < 3:
        raise ValueError(f"student: expected at least 3 rows, got {student.shape[0]}")
    if max_items < 3:
        raise ValueError(f"max_items: expected an integer >= 3, got {max_items}")
    if student.shape[0] > max_items:
        rows = np.sort(np.random.default_rng(seed).choice(student.shape[0], max_items, replace=False))
        student, teacher = student[rows], teacher[rows]
    upper = np.triu_indices(student.shape[0], k=1)
    student_ranks = _average_ranks(cosine_matrix(student, student)[upper])  # (P,)
    teacher_ranks = _average_ranks(cosine_matrix(teacher, teacher)[upper])  # (P,)
    student_ranks -= student_ranks.mean()
    teacher_ranks -= teacher_ranks.mean()
    denominator = np.sqrt((student_ranks**2).sum() * (teacher_ranks**2).sum())
    if denominator == 0:
        return float("nan")
    return float((student_ranks * teacher_ranks).sum() / denominator)
