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
    if guide.shape[:2] != tokens.shape[:2] or guide.shape[-1] != query.shape[-1]:
        raise ValueError(f"guided branch: guide {tuple(guide.shape)} must be (V, N, {query.shape[-1]}) "
                         f"like tokens {tuple(tokens.shape)}")
    n_queries, h = query.shape
    n_videos, n_tokens, _ = tokens.shape
    out = query.new_empty(n_queries, n_videos)
    unit_tokens = F.normalize(tokens, dim=-1)
    unit_guide = F.normalize(guide, dim=-1)
    for start in range(0, n_queries, query_chunk):
        q = F.normalize(query[start:start + query_chunk], dim=-1)  # (c, H)
        videos = max(1, BLOCK_ELEMENTS // max(1, q.shape[0] * n_tokens))
        for v0 in range(0, n_videos, videos):
            v1 = min(n_videos, v0 + videos)
            sims = torch.einsum("ch,bnh->cbn", q, unit_tokens[v0:v1])  # (c, b, N)
            best = sims.argmax(dim=-1)  # (c, b) first maximum
            picked = unit_guide[v0:v1][torch.arange(v1 - v0)[None, :], best]  # (c, b, H)
            out[start:start + q.shape[0], v0:v1] = torch.einsum("ch,cbh->cb", q, picked)
    return out


def branch_chunked(branch, queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor],
                   query_chunk: int) -> torch.Tensor:
    """One ScoreBranch's (Q, V) float32 scores."""
    query, tokens = queries[branch.query_key], videos[branch.video_key]
    if branch.guide_key is None:
        return scoring.branch_scores_chunked(query, tokens, query_chunk)
    return guided_branch_chunked(query, tokens, videos[branch.guide_key], query_chunk)


@torch.no_grad()
def model_scores_chunked(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                         weights: tuple[float, float], query_chunk: int = scoring.QUERY_CHUNK,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """w_0 * s_0 + w_1 * s_1 over the two branches (fused in float32, as prvr_scores): (Q, V) in dtype."""
    if len(branches) != 2:
        raise ValueError(f"a model's score has two branches, got {len(branches)}")
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    n_videos = {videos[key].shape[0] for key in video_keys(branches)}
    if len(n_videos) != 1:
        raise ValueError(f"score branches disagree on the number of videos: {sorted(n_videos)}")
    first, second = (branch_chunked(b, queries, videos, query_chunk) for b in branches)
    return (weights[0] * first + weights[1] * second).to(dtype)
