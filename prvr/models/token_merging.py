"""Order-preserving token merging (the paper's coarse branch) and further merging to per-video
segment counts (adaptive CBVA), batched over videos: no per-video Python loops.

Stage merging (`merge_stages`), as in the authors' data loader (admins97/MSC_PRVR):
- Tokens of a stage are paired (2i, 2i+1); only these adjacent pairs may merge in a round.
- Pair similarity is the dot product of the (unnormalised) input features of the two tokens.
- Going from N to n tokens merges the N - n most similar pairs in one round (each merge removes
  one token), so a stage may remove at most N // 2 tokens per round.
- A merged token is the size-weighted average of its two tokens; its size (frames held) is the sum.
- Each frame keeps the index of the token that holds it: labels (B, Nf), non-decreasing in time.

    merged = merge_stages(feats, (80, 52, 32))       # feats (B, 128, D)
    merged.features, merged.sizes, merged.frame_to_token   # (B, 32, D), (B, 32), (B, 128) long

Where this differs from the released code (documented, deliberate):
- Ties of similarity are broken by the lower pair index (stable sort); the code's argsort is not
  stable, so its choice among exactly equal pairs is unspecified.
- A stage that removes more than N // 2 tokens runs several rounds (the code asserts it never
  does); with an odd N the last token has no partner in that round (the code asserts even N).
- Stage targets >= the current count are no-ops (videos shorter than the stage sizes).

Merging to per-video counts (`merge_to_counts`) continues from the clip tokens through a fixed
chain of stages (e.g. 32 -> 20 -> 12 -> 8 -> 5) and returns, per video, the tokens at its own
count (padded to the largest count in the batch, with a validity mask). Two pairings:
- "adjacent": the order-preserving rounds above (labels stay monotone).
- "bipartite": what the authors' CBVA loss does: even-position tokens A against odd-position
  tokens B, all A x B pairs are candidates (not only neighbours), cosine similarity of `metric`,
  greedy matching by descending similarity, each token in at most one pair; the merged token
  takes A's position. Order is NOT preserved (a frame's segment may be non-contiguous).
Because every video follows the same chain, one video's result never depends on the batch.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from prvr.errors import PrvrError

PAIRINGS = ("adjacent", "bipartite")


class MergingError(PrvrError, ValueError):
    """Bad merging arguments (stage counts, per-video counts, shapes); the message says which."""


class MergedTokens(NamedTuple):
    """Tokens after merging, in temporal order (same fields as models.gmmformer.PooledTokens).

    features: (B, N, D); sizes: (B, N) frames held (float); frame_to_token: (B, Nf) long.
    """
    features: torch.Tensor
    sizes: torch.Tensor
    frame_to_token: torch.Tensor


class Segments(NamedTuple):
    """Per-video segments padded to S = max count: tokens (B, S, H) (zeros at padding), sizes
    (B, S) (0 at padding), mask (B, S) bool (True = real segment), frame_to_segment (B, Nf) long."""
    tokens: torch.Tensor
    sizes: torch.Tensor
    mask: torch.Tensor
    frame_to_segment: torch.Tensor


def merge_weights(dest: torch.Tensor, n_out: int, sizes: torch.Tensor):
    """(B, N) destinations and sizes -> averaging matrix (B, n_out, N) and new sizes (B, n_out).

    Row j of the matrix holds size_i / (sum of sizes merged into j) for the tokens i with
    dest_i = j, so one batched matmul gives every size-weighted average (faster on CPU than
    scatter_add over D, and differentiable in the tokens).
    """
    member = F.one_hot(dest, n_out).to(sizes.dtype) * sizes.unsqueeze(-1)  # (B, N, n_out)
    new_sizes = member.sum(dim=1)  # (B, n_out)
    return (member / new_sizes.unsqueeze(1)).transpose(1, 2), new_sizes


def apply_merge(dest: torch.Tensor, n_out: int, tokens: torch.Tensor, sizes: torch.Tensor,
                labels: torch.Tensor, metric: torch.Tensor | None = None):
    """Merge tokens sharing a destination index.

    dest: (B, N) long, the new index of each token (values 0..n_out-1, every slot used);
    tokens (B, N, D); sizes (B, N); labels (B, Nf) long token index per frame; metric (B, N, E)
    optional second feature set merged with the same weights.
    Returns (tokens (B, n_out, D), sizes (B, n_out), labels (B, Nf), metric or None).
    """
    weights, new_sizes = merge_weights(dest, n_out, sizes)  # (B, n_out, N), (B, n_out)
    new_tokens = weights.to(tokens.dtype) @ tokens  # (B, n_out, D)
    new_metric = None if metric is None else weights.to(metric.dtype) @ metric
    return new_tokens, new_sizes, dest.gather(1, labels), new_metric


def adjacent_destinations(metric: torch.Tensor, n_merge: int) -> torch.Tensor:
    """One order-preserving round: merge the n_merge most similar pairs (2i, 2i+1).

    metric: (B, N, E) features whose dot product is the pair similarity; n_merge <= N // 2.
    Returns dest (B, N) long: token 2i+1 of a merged pair takes 2i's new index.
    """
    b, n, _ = metric.shape
    pairs = n // 2
    left, right = metric[:, 0:2 * pairs:2], metric[:, 1:2 * pairs:2]  # (B, P, E) each
    similarity = (left * right).sum(dim=-1)  # (B, P)
    order = similarity.argsort(dim=1, descending=True, stable=True)  # ties: lower pair first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pairs, device=metric.device)
                                            .expand(b, pairs))  # (B, P) rank of each pair
    absorbed = torch.zeros(b, n, dtype=torch.bool, device=metric.device)
    absorbed[:, 1:2 * pairs:2] = rank < n_merge  # right tokens folded into their left partner
    return (~absorbed).long().cumsum(dim=1) - 1  # (B, N): absorbed tokens repeat the left index


def bipartite_destinations(metric: torch.Tensor, n_merge: int) -> torch.Tensor:
    """One round of the authors' CBVA merging: greedy matching of even (A) to odd (B) tokens by
    descending cosine similarity of `metric` (B, N, E); the B token joins its A partner's slot.

    The greedy loop runs n_merge steps, each a batched argmax over the still-free A x B pairs;
    ties go to the lower flat (a, b) index, as the code's stable sort of (a, b)-ordered candidates.
    """
    b, n, _ = metric.shape
    unit = F.normalize(metric.float(), dim=-1)
    side_a, side_b = unit[:, 0::2], unit[:, 1::2]  # (B, Pa, E), (B, Pb, E)
    n_a, n_b = side_a.shape[1], side_b.shape[1]
    if n_merge > min(n_a, n_b):
        raise MergingError(f"bipartite merging: cannot merge {n_merge} pairs of {n} tokens")
    similarity = side_a @ side_b.transpose(1, 2)  # (B, Pa, Pb)
    rows = torch.arange(b, device=metric.device)
    partner = torch.full((b, n_b), -1, dtype=torch.long, device=metric.device)  # A index per B
    for _ in range(n_merge):
        best = similarity.flatten(1).argmax(dim=1)  # (B,) first maximum
        a, j = best // n_b, best % n_b
        partner[rows, j] = a
        similarity[rows, a, :] = float("-inf")  # each token in at most one pair
        similarity[rows, :, j] = float("-inf")
    absorbed = torch.zeros(b, n, dtype=torch.bool, device=metric.device)
    absorbed[:, 1::2] = partner >= 0
    kept_index = (~absorbed).long().cumsum(dim=1) - 1  # (B, N), valid for kept tokens
    partner_pos = torch.zeros(b, n, dtype=torch.long, device=metric.device)
    partner_pos[:, 1::2] = 2 * partner.clamp(min=0)  # position of each B token's A partner
    return torch.where(absorbed, kept_index.gather(1, partner_pos), kept_index)


def merge_round(tokens, sizes, labels, metric, n_merge: int, pairing: str):
    """Remove n_merge tokens in one round of `pairing`; returns (tokens, sizes, labels, metric).
    metric None: the tokens themselves decide (and are not merged twice)."""
    decide = tokens if metric is None else metric
    if pairing == "adjacent":
        dest = adjacent_destinations(decide, n_merge)
    else:
        dest = bipartite_destinations(decide, n_merge)
    return apply_merge(dest, tokens.shape[1] - n_merge, tokens, sizes, labels, metric)


def merge_to(tokens, sizes, labels, metric, target: int, pairing: str = "adjacent"):
    """Merge (B, N, .) tokens down to min(N, target) tokens: one round per N // 2 merges (adjacent)
    or exactly one round (bipartite, as the authors' code). Returns (tokens, sizes, labels, metric);
    metric None: the tokens' own features decide which pairs merge.
    """
    if pairing not in PAIRINGS:
        raise MergingError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    while tokens.shape[1] > max(target, 1):
        n = tokens.shape[1]
        step = min(n - target, n // 2)
        if pairing == "bipartite" and step < n - target:
            raise MergingError(f"bipartite merging: {n} -> {target} tokens needs more than "
                               f"{n // 2} merges in one round")
        tokens, sizes, labels, metric = merge_round(tokens, sizes, labels, metric, step, pairing)
    return tokens, sizes, labels, metric


def check_stages(stages: Sequence[int], what: str = "stages") -> tuple[int, ...]:
    """Stage token counts must be positive and strictly decreasing."""
    stages = tuple(int(s) for s in stages)
    if not stages or any(s < 1 for s in stages):
        raise MergingError(f"{what}: token counts must be >= 1, got {stages}")
    if any(b >= a for a, b in zip(stages, stages[1:])):
        raise MergingError(f"{what}: token counts must strictly decrease, got {stages}")
    return stages


def merge_stages(features: torch.Tensor, stages: Sequence[int],
                 sizes: torch.Tensor | None = None) -> MergedTokens:
    """Order-preserving merging of (B, Nf, D) frame features through `stages` token counts.

    Similarity = dot product of the current (merged) features themselves. `sizes` (B, Nf): frames
    each input token holds (default 1). Returns MergedTokens with min(Nf, stages[-1]) tokens.
    """
    stages = check_stages(stages)
    if features.dim() != 3:
        raise MergingError(f"features: expected (B, N, D), got {tuple(features.shape)}")
    b, n_frames, _ = features.shape
    if sizes is None:
        sizes = features.new_ones(b, n_frames)
    labels = torch.arange(n_frames, device=features.device).expand(b, n_frames)  # (B, Nf)
    tokens = features
    for target in stages:
        tokens, sizes, labels, _ = merge_to(tokens, sizes, labels, None, target)
    return MergedTokens(tokens, sizes, labels)


def _select_level(levels: dict[int, tuple], counts: torch.Tensor, width: int) -> Segments:
    """Per video, take the merge level whose token count equals its count; pad to `width`."""
    first = next(iter(levels.values()))
    b, _, h = first[0].shape
    n_frames = first[2].shape[1]
    tokens = first[0].new_zeros(b, width, h)
    sizes = first[1].new_zeros(b, width)
    labels = torch.zeros(b, n_frames, dtype=torch.long, device=counts.device)
    for count, (lvl_tokens, lvl_sizes, lvl_labels, _) in levels.items():
        chosen = counts == count  # (B,)
        if count > width or not bool(chosen.any()):
            continue
        pad = width - count
        tokens = torch.where(chosen[:, None, None], F.pad(lvl_tokens, (0, 0, 0, pad)), tokens)
        sizes = torch.where(chosen[:, None], F.pad(lvl_sizes, (0, pad)), sizes)
        labels = torch.where(chosen[:, None], lvl_labels, labels)
    mask = torch.arange(width, device=counts.device) < counts[:, None]  # (B, S)
    return Segments(tokens, sizes, mask, labels)


def merge_to_counts(tokens: torch.Tensor, sizes: torch.Tensor, labels: torch.Tensor,
                    counts: torch.Tensor, stages: Sequence[int], metric: torch.Tensor | None = None,
                    pairing: str = "adjacent") -> Segments:
    """Merge each video's tokens further, to its own count, through a fixed chain of stages.

    tokens (B, N, H): e.g. the encoded clip tokens (gradients flow through the averages);
    sizes (B, N) frames per token; labels (B, Nf) long frame -> token; counts (B,) long, each N
    or one of `stages` (strictly decreasing, all < N, e.g. (20, 12, 8, 5));
    metric (B, N, E): features that decide which tokens merge (default: tokens, detached) and are
    merged alongside (e.g. the clip branch's input features, as the authors' code does);
    pairing: "adjacent" (order-preserving) or "bipartite" (authors' CBVA code); see module doc.
    Returns Segments padded to S = max(counts).
    """
    if tokens.dim() != 3 or sizes.shape != tokens.shape[:2] or labels.shape[0] != tokens.shape[0]:
        raise MergingError(f"merge_to_counts: tokens {tuple(tokens.shape)}, sizes "
                           f"{tuple(sizes.shape)}, labels {tuple(labels.shape)} do not agree")
    n = tokens.shape[1]
    stages = check_stages(stages, "merge_to_counts stages")
    if stages[0] >= n:
        raise MergingError(f"merge_to_counts stages {stages} must all be below {n} tokens")
    allowed = {n, *stages}
    counts = counts.to(device=tokens.device, dtype=torch.long)
    if counts.shape != (tokens.shape[0],):
        raise MergingError(f"counts: expected ({tokens.shape[0]},), got {tuple(counts.shape)}")
    bad = sorted(set(counts.tolist()) - allowed)
    if bad:
        raise MergingError(f"counts: {bad} not in the merge chain {sorted(allowed, reverse=True)}")
    metric = tokens.detach() if metric is None else metric.detach()
    level = (tokens, sizes, labels, metric)
    levels = {n: level}
    smallest = int(counts.min())
    for target in stages:
        if target < smallest:
            break  # no video needs this level
        level = merge_to(*level, target, pairing)
        levels[target] = level
    return _select_level(levels, counts, int(counts.max()))


__all__ = ["MergedTokens", "MergingError", "PAIRINGS", "Segments", "adjacent_destinations",
           "apply_merge", "bipartite_destinations", "check_stages", "merge_round", "merge_stages",
           "merge_to", "merge_to_counts"]
