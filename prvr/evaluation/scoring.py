"""Query-video scores of the PRVR model: max over a video's tokens, fused over the two branches.

    s_branch(q, v) = max_n cos(q, token_{v,n})          (dot product when normalize=False)
    s(q, v) = w_clip * s_clip(q, v) + w_frame * s_frame(q, v)

Differentiable (the losses use `branch_scores` too); videos are processed in chunks so a large
(Q, B, N) similarity tensor is never held at once.

    scores = prvr_scores(query, clip_tokens, frame_tokens, w_clip=0.4, w_frame=0.6)   # (Q, B)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_CHUNK_ELEMENTS = 1 << 26  # bound on Q * chunk * N similarities held at once (~256 MB fp32)


def branch_scores(query: torch.Tensor, tokens: torch.Tensor, normalize: bool = True,
                  token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max over each video's tokens of the query-token similarity.

    query: (Q, H); tokens: (B, N, H); token_mask: optional (B, N) bool, True = real token
    (padded tokens never win the max). normalize=True: cosine, else dot product. Returns (Q, B).
    """
    if query.dim() != 2 or tokens.dim() != 3 or query.shape[-1] != tokens.shape[-1]:
        raise ValueError(f"branch_scores: expected query (Q, H) and tokens (B, N, H), got "
                         f"{tuple(query.shape)} and {tuple(tokens.shape)}")
    if normalize:
        query, tokens = F.normalize(query, dim=-1), F.normalize(tokens, dim=-1)
    n_queries, _ = query.shape
    b, n, _ = tokens.shape
    chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, n_queries * n))
    parts = []
    for start in range(0, b, chunk):
        part = torch.einsum("qh,bnh->qbn", query, tokens[start:start + chunk])  # (Q, b, N)
        if token_mask is not None:
            pad = ~token_mask[start:start + chunk]  # (b, N)
            part = part.masked_fill(pad.unsqueeze(0), float("-inf"))
        parts.append(part.amax(dim=-1))  # (Q, b)
    return torch.cat(parts, dim=1) if parts else query.new_zeros(n_queries, 0)


def prvr_scores(query: torch.Tensor, clip_tokens: torch.Tensor, frame_tokens: torch.Tensor,
                w_clip: float = 0.4, w_frame: float = 0.6) -> torch.Tensor:
    """Fused cosine score (Q, B) = w_clip * clip-branch max + w_frame * frame-branch max."""
    if clip_tokens.shape[0] != frame_tokens.shape[0]:
        raise ValueError(f"prvr_scores: {clip_tokens.shape[0]} videos in clip_tokens but "
                         f"{frame_tokens.shape[0]} in frame_tokens")
    return (w_clip * branch_scores(query, clip_tokens)
            + w_frame * branch_scores(query, frame_tokens))
