"""Adaptive CBVA (prvr.losses.cbva): how many segments each video gets, or how much each negative counts.

form "segments" (authors' code): per video, the cosine-similarity graph of its clip-branch tokens
(the model's `merged_inputs`, the clip branch's input features, as the code uses) is thresholded,
edge i-j iff cos > threshold, and its transitive closure is taken (reachability; computed for the
whole batch at once by repeated boolean squaring, log2(N) batched matmuls). With
    ratio = (ordered pairs i != j that are connected) / (n (n - 1))   (n = the video's valid tokens)
and choices c_0 > c_1 > ... > c_{m-1} (e.g. 32, 20, 12, 8, 5):
    index = #{k in 1..m-1 : ratio >= k / m},   count = min(c_index, n)
(m = 5: ratio >= 0.8 -> 5, >= 0.6 -> 8, >= 0.4 -> 12, >= 0.2 -> 20, else 32: the code's rule). A
connected video (one event) gets few segments, a video of distinct events many. The clip tokens are
then merged further to that count (`prvr.models.token_merging.merge_to_counts`, through the chain of
smaller choices, as the code merges 32 -> 20 -> 12 -> 8 -> 5 until it reaches the count).

form "weights" (seed summary: "adjusts contrastive loss weights based on inter-segment similarity"),
defined here as: a negative segment j of an anchor whose positive segment is i enters the CBVA
contrast with weight
    w_ij = 1 - max(0, cos(c_i, c_j))        (c = the coarse-branch segment tokens, detached)
so a near-duplicate of the positive segment (the same event cut in two) is not pushed away, and an
unrelated or opposite segment keeps full weight. Positives keep weight 1. See prvr.losses.cbva for
where the weights enter each form.

    ratio = connectivity_ratio(clip_inputs, mask, threshold=0.8)         # (B,)
    counts = segment_counts(ratio, (32, 20, 12, 8, 5), n_tokens=mask.sum(1))
    weights = segment_pair_weights(segment_tokens)                       # (B, S, S)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

FORMS = ("segments", "weights")


def transitive_closure(adjacency: torch.Tensor) -> torch.Tensor:
    """(B, N, N) bool adjacency -> (B, N, N) bool reachability (every token reaches itself).

    Repeated squaring of (A or I): after k squarings, paths of up to 2^k edges are covered.
    """
    n = adjacency.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=adjacency.device)
    reach = (adjacency | eye).float()  # counts of 0/1 paths stay exact in float up to n <= 2^24
    for _ in range(max(1, math.ceil(math.log2(max(n, 2))))):
        reach = (reach @ reach).clamp_(max=1.0)
    return reach > 0


def connectivity_ratio(features: torch.Tensor, mask: torch.Tensor | None,
                       threshold: float) -> torch.Tensor:
    """Fraction of ordered pairs of a video's valid tokens joined in its thresholded graph.

    features (B, N, D) (cosine similarity is used), mask (B, N) bool valid tokens or None.
    Returns (B,) float64; 0 for a video with fewer than two valid tokens.
    """
    b, n, _ = features.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=features.device)
    unit = F.normalize(features.detach().float(), dim=-1)
    pair_valid = mask[:, :, None] & mask[:, None, :]
    pair_valid = pair_valid & ~torch.eye(n, dtype=torch.bool, device=features.device)
    adjacency = (unit @ unit.transpose(1, 2) > threshold) & pair_valid  # (B, N, N)
    connected = transitive_closure(adjacency) & pair_valid
    pairs = pair_valid.sum(dim=(1, 2)).double()
    return connected.sum(dim=(1, 2)).double() / pairs.clamp(min=1)


def check_choices(choices: Sequence[int]) -> tuple[int, ...]:
    """Segment counts must be positive and strictly decreasing (largest first)."""
    choices = tuple(int(c) for c in choices)
    if not choices or any(c < 1 for c in choices) or any(b >= a for a, b in zip(choices, choices[1:])):
        raise ValueError(f"segment choices must be positive and strictly decreasing, got {choices}")
    return choices


def segment_counts(ratio: torch.Tensor, choices: Sequence[int], n_tokens) -> torch.Tensor:
    """(B,) connectivity ratios -> (B,) long segment counts (the rule of the module docstring).

    n_tokens: int or (B,) tensor, the most segments a video can have (its valid clip tokens).
    """
    choices = check_choices(choices)
    m = len(choices)
    bins = torch.tensor([k / m for k in range(1, m)], dtype=torch.float64, device=ratio.device)
    index = (ratio.double()[:, None] >= bins[None, :]).sum(dim=1)  # (B,)
    counts = torch.tensor(choices, dtype=torch.long, device=ratio.device)[index]
    limit = torch.as_tensor(n_tokens, dtype=torch.long, device=ratio.device)
    return torch.minimum(counts, limit)


def merge_chain(choices: Sequence[int], n_tokens: int) -> tuple[int, ...]:
    """The stages below n_tokens that merging walks through (choices >= n_tokens mean 'no merge')."""
    return tuple(c for c in check_choices(choices) if c < n_tokens)


def adaptive_segments(tokens: torch.Tensor, sizes: torch.Tensor, frame_to_token: torch.Tensor,
                      graph_features: torch.Tensor, choices: Sequence[int], threshold: float,
                      pairing: str = "bipartite"):
    """The "segments" form: per-video counts from connectivity, then merging to those counts.

    tokens (B, N, H) coarse tokens (gradients flow through the merge averages); sizes (B, N) frames
    per token; frame_to_token (B, Nf) long; graph_features (B, N, D) build the graph and decide the
    merges (the code: the clip branch's inputs). Returns (Segments, counts (B,) long).
    """
    from prvr.models.token_merging import merge_to_counts

    n = tokens.shape[1]
    ratio = connectivity_ratio(graph_features, None, threshold)
    counts = segment_counts(ratio, choices, n)
    stages = merge_chain(choices, n)
    if not stages:
        from prvr.models.token_merging import Segments
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return Segments(tokens, sizes, mask, frame_to_token), counts
    segments = merge_to_counts(tokens, sizes, frame_to_token, counts, stages,
                               metric=F.normalize(graph_features.detach(), dim=-1), pairing=pairing)
    return segments, counts


def segment_pair_weights(segments: torch.Tensor) -> torch.Tensor:
    """The "weights" form: (B, S, H) coarse segment tokens -> (B, S, S) w_ij = 1 - max(0, cos), detached."""
    unit = F.normalize(segments.detach(), dim=-1)
    return 1 - (unit @ unit.transpose(1, 2)).clamp(min=0)
