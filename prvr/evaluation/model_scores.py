"""A model's (Q, V) evaluation scores from its `score_branches` (prvr.models.base.ScoreBranch).

    s(q, v) = w_clip * s_0(q, v) + w_frame * s_1(q, v)

A max branch is `scoring.branch_scores_chunked` (max cosine over the video's tokens); a guided branch
(MS-SL's key-clip guided frame branch) scores the guide row at the position where the branch's own
tokens reach their max cosine:

    s_i(q, v) = cos(Q[q], G[v, n*]),   n* = first argmax_n cos(Q[q], T[v, n])

    scores = model_scores_chunked(queries, videos, model.score_branches, (0.4, 0.6))   # (Q, V) float64

When the MSC models' two max branches share the query (the default), the result is exactly
`scoring.prvr_scores_chunked`'s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from prvr.evaluation import scoring

BLOCK_ELEMENTS = 1 << 21  # (queries x videos x tokens) similarities per block of a guided branch


def video_keys(branches) -> tuple[str, ...]:
    """The encode_videos outputs the branches read, in first-use order."""
    keys: list[str] = []
    for branch in branches:
        for key in (branch.video_key, branch.guide_key):
            if key is not None and key not in keys:
                keys.append(key)
    return tuple(keys)


def query_keys(branches) -> tuple[str, ...]:
    """The encode_queries outputs the branches read, in first-use order."""
    return tuple(dict.fromkeys(branch.query_key for branch in branches))


@torch.no_grad()
def guided_branch_chunked(query: torch.Tensor, tokens: torch.Tensor, guide: torch.Tensor,
                          query_chunk: int = scoring.QUERY_CHUNK) -> torch.Tensor:
    """cos(query, guide[v, n*]) with n* the first argmax of cos(query, tokens[v, n]): (Q, V) float32.

    query (Q, H), tokens (V, N, H), guide (V, N, H'): H' may differ from H only if query matches it;
    here the guide lives in the query's space (H' = H). Memory: the result and one block of about
    BLOCK_ELEMENTS similarities plus the block's picked guide rows.
    """
    _check_guide(query, tokens, guide)
    unit_tokens, unit_guide = F.normalize(tokens, dim=-1), F.normalize(guide, dim=-1)
    out = query.new_empty(query.shape[0], tokens.shape[0])
    for start in range(0, query.shape[0], query_chunk):
        out[start:start + query_chunk] = _guided_chunk(query[start:start + query_chunk], unit_tokens, unit_guide)
    return out


def _check_guide(query: torch.Tensor, tokens: torch.Tensor, guide: torch.Tensor) -> None:
    if guide.shape[:2] != tokens.shape[:2] or guide.shape[-1] != query.shape[-1]:
        raise ValueError(f"guided branch: guide {tuple(guide.shape)} must be (V, N, {query.shape[-1]}) "
                         f"like tokens {tuple(tokens.shape)}")


def _guided_chunk(query: torch.Tensor, unit_tokens: torch.Tensor, unit_guide: torch.Tensor) -> torch.Tensor:
    """guided_branch_chunked for one chunk of queries (c, H), the tokens and guide already unit: (c, V)."""
    q = F.normalize(query, dim=-1)  # (c, H)
    n_videos, n_tokens, _ = unit_tokens.shape
    out = q.new_empty(q.shape[0], n_videos)
    videos = max(1, BLOCK_ELEMENTS // max(1, q.shape[0] * n_tokens))
    for v0 in range(0, n_videos, videos):
        v1 = min(n_videos, v0 + videos)
        sims = torch.einsum("ch,bnh->cbn", q, unit_tokens[v0:v1])  # (c, b, N)
        best = sims.argmax(dim=-1)  # (c, b) first maximum
        picked = unit_guide[v0:v1][torch.arange(v1 - v0)[None, :], best]  # (c, b, H)
        out[:, v0:v1] = torch.einsum("ch,cbh->cb", q, picked)
    return out


def branch_chunked(branch, queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor],
                   query_chunk: int) -> torch.Tensor:
    """One ScoreBranch's (Q, V) float32 scores."""
    query, tokens = queries[branch.query_key], videos[branch.video_key]
    if branch.guide_key is None:
        return scoring.branch_scores_chunked(query, tokens, query_chunk)
    return guided_branch_chunked(query, tokens, videos[branch.guide_key], query_chunk)


def prepare_videos(branches, videos: dict[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    """What every query chunk of the branches reads, computed once: ("unit", key) the unit tokens of a
    max branch (scoring.unit_tokens), ("normalized", key) a guided branch's tokens and guide rows."""
    prepared = {}
    for branch in branches:
        if branch.guide_key is None:
            if ("unit", branch.video_key) not in prepared:
                prepared["unit", branch.video_key] = scoring.unit_tokens(videos[branch.video_key])
            continue
        for name in (branch.video_key, branch.guide_key):
            if ("normalized", name) not in prepared:
                prepared["normalized", name] = F.normalize(videos[name], dim=-1)
    return prepared


def branch_chunk(branch, query: torch.Tensor, prepared: dict) -> torch.Tensor:
    """One branch's (c, V) float32 scores of a chunk of queries (c, H), from prepare_videos's tensors:
    the same numbers as branch_chunked's rows of those queries (when the chunk is one of its chunks)."""
    if branch.guide_key is None:
        return scoring._cosine_block_maxima(query, prepared["unit", branch.video_key], scoring.inverse_norms(query))
    tokens, guide = prepared["normalized", branch.video_key], prepared["normalized", branch.guide_key]
    _check_guide(query, tokens, guide)
    return _guided_chunk(query, tokens, guide)


def _check_inputs(queries, videos, branches, query_chunk: int) -> int:
    """The number of videos, after checking the branches, the chunk size and the shapes."""
    if len(branches) != 2:
        raise ValueError(f"a model's score has two branches, got {len(branches)}")
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    n_videos = {videos[key].shape[0] for key in video_keys(branches)}
    if len(n_videos) != 1:
        raise ValueError(f"score branches disagree on the number of videos: {sorted(n_videos)}")
    for branch in branches:
        scoring.check_shapes(queries[branch.query_key], videos[branch.video_key])
    return n_videos.pop()


@torch.no_grad()
def fused_chunks(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                 weights: tuple[float, float], query_chunk: int = scoring.QUERY_CHUNK):
    """Yield (start, (c, V) float32 w_0 s_0 + w_1 s_1) for each chunk of query_chunk queries, the
    videos prepared once (prepare_videos): model_scores_chunked's rows, chunk by chunk."""
    n_videos = _check_inputs(queries, videos, branches, query_chunk)
    n_queries = queries[branches[0].query_key].shape[0]
    if n_videos == 0:
        for start in range(0, n_queries, query_chunk):
            yield start, torch.zeros(min(query_chunk, n_queries - start), 0)
        return
    prepared = prepare_videos(branches, videos)
    for start in range(0, n_queries, query_chunk):
        yield start, chunk_scores({k: v[start:start + query_chunk] for k, v in queries.items()}, prepared,
                                  branches, weights)


def chunk_scores(query: dict[str, torch.Tensor], prepared: dict, branches, weights: tuple[float, float]) -> torch.Tensor:
    """(c, V) float32 w_0 s_0 + w_1 s_1 of a chunk of queries (each (c, H)), from prepare_videos's tensors."""
    first, second = (branch_chunk(b, query[b.query_key], prepared) for b in branches)
    return weights[0] * first + weights[1] * second


@torch.no_grad()
def model_scores_chunked(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                         weights: tuple[float, float], query_chunk: int = scoring.QUERY_CHUNK,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """w_0 * s_0 + w_1 * s_1 over the two branches (fused in float32, as prvr_scores): (Q, V) in dtype."""
    n_videos = _check_inputs(queries, videos, branches, query_chunk)
    out = torch.empty(queries[branches[0].query_key].shape[0], n_videos, dtype=dtype)
    for start, fused in fused_chunks(queries, videos, branches, weights, query_chunk):
        out[start:start + fused.shape[0]] = fused
    return out
