"""Retrieval loss of the GMMFormer-v2 / MSC code family, on both the clip and the frame branch.

Notation: a batch of B videos and Q queries; v(q) in [0, B) is query q's video (`query_to_video`);
P_b = {q : v(q) = b} are video b's queries. Per branch, from the model's outputs:

    s[q, b] = max_n <query_q, token_{b,n}>            dot products, (Q, B)  -> InfoNCE
    c[q, b] = max_n cos(query_q, token_{b,n})         cosines,      (Q, B)  -> triplet

Multi-positive InfoNCE, no temperature (released code):
    L_nce = mean_q [ logsumexp_b s[q, b] - s[q, v(q)] ]
          + mean_{b : P_b non-empty} [ logsumexp_q s[q, b] - logsumexp_{q in P_b} s[q, b] ]

Triplet ranking with margin m, both directions:
    L_trip = mean_q relu(m + c[q, n_q] - c[q, v(q)])
           + mean_b relu(m + c[n_b, b] - mean_{q in P_b} c[q, b])
  (means over the rows that have a negative; b only over videos with queries in the batch).
  n_q: a video other than v(q); n_b: a query not in P_b. Negative schedule (released code, epochs
  0-based): before `hard_negative_start_epoch` both are drawn uniformly from ALL negatives; from
  that epoch on, n_q is drawn uniformly from the `hard_negative_topk` highest-scored negatives and
  n_b is the hardest negative query. A negative start epoch never switches to hard negatives.
  Draws use the `generator` passed in, so a seeded generator gives the same negatives.

Terms returned (already weighted; the trainer sums them):
    {"nce_clip": w_clip * L_nce(clip), "nce_frame": w_frame * L_nce(frame),
     "trip_clip": L_trip(clip), "trip_frame": L_trip(frame)}
Other models name their two max branches (prvr.models.base.ScoreBranch; `branches=` here): the terms
are then nce_<name> / trip_<name>, the first branch weighted by loss.nce_weight_clip, the second by
loss.nce_weight_frame (e.g. DL-DKD: nce_exploration, trip_inheritance, ...).

    loss_fn = RetrievalLoss(LossConfig())
    terms = loss_fn(**model_outputs, query_to_video=q2v, epoch=3, generator=g)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config_losses import LossConfig
from prvr.evaluation.scoring import branch_dot_and_cosine
from prvr.models.base import MAX_CLIP_AND_FRAME


def positive_mask(query_to_video: torch.Tensor, n_videos: int) -> torch.Tensor:
    """(Q,) video index per query -> (Q, B) bool, True where the video is the query's own."""
    return F.one_hot(query_to_video, n_videos).bool()


def multi_positive_nce(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """InfoNCE without temperature over (Q, B) scores with (Q, B) bool positives (one per row).

    query->video: mean over queries of logsumexp(row) - positive score;
    video->query: mean over videos with >= 1 query of logsumexp(column) - logsumexp(its queries).
    """
    t2v = scores.logsumexp(dim=1) - scores[positives]  # (Q,)
    has_query = positives.any(dim=0)  # (B,)
    col_all = scores.logsumexp(dim=0)  # (B,)
    col_pos = scores.masked_fill(~positives, float("-inf")).logsumexp(dim=0)  # (B,)
    v2t = (col_all - col_pos)[has_query]
    return t2v.mean() + v2t.mean()


def sample_negatives(scores: torch.Tensor, positives: torch.Tensor, pool: int | None,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one negative score per row of (R, C) `scores`; `positives` (R, C) bool are excluded.

    pool=None: uniform over all the row's negatives; pool=k: uniform over its k highest-scored
    negatives (k=1: the hardest). Returns (negative scores (R,), valid (R,) bool: the row had a
    negative). Gradients flow into the picked scores only.
    """
    masked = scores.detach().masked_fill(positives, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)  # negatives first, hardest first
    n_neg = (~positives).sum(dim=1)  # (R,)
    limit = n_neg if pool is None else n_neg.clamp(max=pool)
    device = generator.device if generator is not None else scores.device
    uniform = torch.rand(scores.shape[0], generator=generator, device=device).to(scores.device)
    pick = (uniform * limit).long().clamp(max=(limit - 1).clamp(min=0))  # (R,) rank among negs
    chosen = order.gather(1, pick[:, None])  # (R, 1) column index
    return scores.gather(1, chosen).squeeze(1), n_neg > 0


def triplet_ranking(cosines: torch.Tensor, positives: torch.Tensor, margin: float,
                    query_pool: int | None, video_pool: int | None,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Hinge ranking loss on (Q, B) cosines in both directions; see the module docstring.

    query_pool: negative pool for query->video rows; video_pool: for video->query rows.
    """
    pos_t2v = cosines[positives]  # (Q,) each query's own video
    neg_t2v, ok_t2v = sample_negatives(cosines, positives, query_pool, generator)
    t2v = F.relu(margin + neg_t2v - pos_t2v)[ok_t2v]

    cos_v, pos_v = cosines.t(), positives.t()  # (B, Q)
    counts = pos_v.sum(dim=1)  # (B,)
    pos_v2t = (cos_v * pos_v).sum(dim=1) / counts.clamp(min=1)  # mean over the video's queries
    neg_v2t, ok_v2t = sample_negatives(cos_v, pos_v, video_pool, generator)
    v2t = F.relu(margin + neg_v2t - pos_v2t)[ok_v2t & (counts > 0)]

    zero = cosines.sum() * 0  # keeps the graph (and dtype/device) when a direction is empty
    return (t2v.mean() if len(t2v) else zero) + (v2t.mean() if len(v2t) else zero)


def check_query_to_video(query_to_video: torch.Tensor, n_queries: int, n_videos: int) -> None:
    """One-line ValueError unless query_to_video is a (Q,) integer index into B videos."""
    if query_to_video.shape != (n_queries,) or query_to_video.dtype != torch.long:
        raise ValueError(f"query_to_video: expected long ({n_queries},), got "
                         f"{query_to_video.dtype} {tuple(query_to_video.shape)}")
    if n_queries and (query_to_video.min() < 0 or query_to_video.max() >= n_videos):
        raise ValueError(f"query_to_video: index out of range for {n_videos} videos")


class RetrievalLoss(nn.Module):
    """Both branches' InfoNCE and triplet terms; see the module docstring for formulas."""

    def __init__(self, cfg: LossConfig, branches=MAX_CLIP_AND_FRAME):
        super().__init__()
        if cfg.hard_negative_topk < 1:
            raise ValueError(f"loss.hard_negative_topk must be >= 1, got {cfg.hard_negative_topk}")
        if len(branches) != 2 or any(b.guide_key is not None for b in branches):
            raise ValueError("RetrievalLoss: needs two max branches (a guided branch has its own loss)")
        self.cfg = cfg
        self.branches = tuple(branches)

    def negative_pools(self, epoch: int) -> tuple[int | None, int | None]:
        """(query->video pool, video->query pool) for this epoch; None = all negatives."""
        start = self.cfg.hard_negative_start_epoch
        if start < 0 or epoch < start:
            return None, None
        return self.cfg.hard_negative_topk, 1

    def forward(self, *, query_to_video: torch.Tensor, epoch: int = 0,
                generator: torch.Generator | None = None, **outputs) -> dict[str, torch.Tensor]:
        """The model's outputs by keyword (default: query (Q, H), clip_tokens (B, Nc, H),
        frame_tokens (B, Nf, H)), query_to_video (Q,) long.

        Returns {"nce_clip", "nce_frame", "trip_clip", "trip_frame"} (named after the branches):
        weighted scalar terms.
        """
        missing = [k for b in self.branches for k in (b.query_key, b.video_key) if k not in outputs]
        if missing:
            raise ValueError(f"RetrievalLoss: the model's outputs lack {sorted(set(missing))}")
        n_videos = outputs[self.branches[0].video_key].shape[0]
        check_query_to_video(query_to_video, outputs[self.branches[0].query_key].shape[0], n_videos)
        positives = positive_mask(query_to_video, n_videos)  # (Q, B)
        query_pool, video_pool = self.negative_pools(epoch)
        terms = {}
        for branch, weight in zip(self.branches, (self.cfg.nce_weight_clip, self.cfg.nce_weight_frame)):
            dots, cosines = branch_dot_and_cosine(outputs[branch.query_key], outputs[branch.video_key])  # (Q, B) each
            terms[f"nce_{branch.name}"] = weight * multi_positive_nce(dots, positives)
            terms[f"trip_{branch.name}"] = triplet_ranking(cosines, positives, self.cfg.margin,
                                                          query_pool, video_pool, generator)
        return terms
