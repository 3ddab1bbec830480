"""MS-SL's training objective (released code: HuiGuanLab/ms-sl, MS_SL_Net.forward), registered for
`model.name: ms_sl` in prvr.losses.factory.RETRIEVAL_LOSSES.

Notation: Q queries, B videos, v(q) query q's video (`query_to_video`), P_b = {q : v(q) = b};
C (B, P, H) the clip-scale proposals, G (B, P, H) the guided frame features (prvr.models.ms_sl),
q_i (Q, H) the query vectors.

Clip scale (the model's first score branch):
    s[q, b] = max_p <q, C[b, p]>           (Q, B) unnormalised, max taken over the dot products
    c[q, b] = max_p cos(q, C[b, p])        (Q, B)
    nce_clip  = w_clip * ( mean_q [lse_b s[q, b] - s[q, v(q)]]
                         + mean_b [lse_q s[q, b] - lse_{q in P_b} s[q, b]] )      (their clip_nce)
    trip_clip = mean_q relu(m + c[q, n_q] - c[q, v(q)])
              + mean_b relu(m + c[n_b, b] - mean_{q in P_b} c[q, b])    (their get_clip_triplet_loss)
  This is prvr.losses.retrieval's multi_positive_nce and triplet_ranking: n_q uniform over all other
  videos, from `hard_negative_start_epoch` on uniform over the `hard_negative_topk` hardest; n_b
  uniform over all queries not in P_b, from that epoch on the hardest.

Frame scale (the guided branch), at each query's key clip k_q = argmax_p cos(q, C[v(q), p]) (first
maximum; no gradient through the choice):
    g_j = G[v(j), k_j]                      (Q, H): query j's own video, at j's key clip
    F[i, j] = <q_i, g_j>,  f[i, j] = cos(q_i, g_j)                       (Q, Q)
    nce_frame  = w_frame * mean_i [ lse(F[i, :] ++ F[:, i]) - F[i, i] ]   (their frame_nce: one
                 logsumexp over row i and column i together, the diagonal counted twice)
    trip_frame = mean_i relu(m + f[i, n_i] - f[i, i]) + mean_j relu(m + f[n'_j, j] - f[j, j])
                                                                          (their get_frame_trip_loss)
  The diagonal is the only positive: a query's other captions of the same video are negatives, as
  theirs. n_i, n'_j: uniform over all negatives, from `hard_negative_start_epoch` on uniform over the
  `hard_negative_topk` hardest in BOTH directions (theirs; the clip video->query side takes the
  hardest). Draws use the `generator` passed in.

w_clip, w_frame = loss.nce_weight_clip, loss.nce_weight_frame (theirs 0.02, 0.04); m = loss.margin.
Terms: {"nce_clip", "trip_clip", "nce_frame", "trip_frame"} (named after the model's branches).

    loss_fn = MsSlLoss(LossConfig(nce_weight_clip=0.02), MsSl.score_branches)
    terms = loss_fn(**model_outputs, query_to_video=q2v, epoch=3, generator=g)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config_losses import LossConfig
from prvr.evaluation.scoring import branch_dot_and_cosine
from prvr.losses.retrieval import (check_query_to_video, multi_positive_nce, positive_mask,
                                   triplet_ranking)

KEY_CLIP_BLOCK = 1 << 24  # (queries x proposals x hidden) elements gathered at once for the key clip


@torch.no_grad()
def key_clip_index(query: torch.Tensor, proposals: torch.Tensor,
                   query_to_video: torch.Tensor) -> torch.Tensor:
    """(Q,) long: for each query, the first proposal of its own video with the highest cosine.

    query (Q, H), proposals (B, P, H), query_to_video (Q,) long."""
    unit_query = F.normalize(query, dim=-1)
    unit_props = F.normalize(proposals, dim=-1)
    n_props, hidden = proposals.shape[1:]
    chunk = max(1, KEY_CLIP_BLOCK // (n_props * hidden))
    parts = []
    for start in range(0, query.shape[0], chunk):
        rows = slice(start, start + chunk)
        own = unit_props[query_to_video[rows]]  # (c, P, H)
        parts.append(torch.einsum("ch,cph->cp", unit_query[rows], own).argmax(dim=1))
    return torch.cat(parts) if parts else query_to_video.new_zeros(0)


def diagonal_symmetric_nce(scores: torch.Tensor) -> torch.Tensor:
    """Their frame_nce on (Q, Q) scores: mean_i [logsumexp(row i ++ column i) - scores[i, i]]."""
    both = torch.cat([scores, scores.t()], dim=1)  # (Q, 2Q): row i, then column i
    return (both.logsumexp(dim=1) - scores.diagonal()).mean()


class MsSlLoss(nn.Module):
    """MS-SL's four retrieval terms; see the module docstring. `branches`: the model's score
    branches, a max branch (clip scale) then a guided branch (frame scale)."""

    def __init__(self, cfg: LossConfig, branches):
        super().__init__()
        if cfg.hard_negative_topk < 1:
            raise ValueError(f"loss.hard_negative_topk must be >= 1, got {cfg.hard_negative_topk}")
        if len(branches) != 2 or branches[0].guide_key is not None or branches[1].guide_key is None:
            raise ValueError("MsSlLoss: needs a max branch then a guided branch (MS-SL's score_branches)")
        self.cfg = cfg
        self.clip, self.frame = branches

    def hard_pool(self, epoch: int) -> int | None:
        """Negative pool from this epoch on: hard_negative_topk once hard negatives start, else all."""
        start = self.cfg.hard_negative_start_epoch
        return self.cfg.hard_negative_topk if 0 <= start <= epoch else None

    def forward(self, *, query_to_video: torch.Tensor, epoch: int = 0,
                generator: torch.Generator | None = None, **outputs) -> dict[str, torch.Tensor]:
        """The model's outputs by keyword (query (Q, H), proposals (B, P, H), guided_frames
        (B, P, H)), query_to_video (Q,) long -> the four weighted scalar terms."""
        needed = {self.clip.query_key, self.clip.video_key, self.frame.query_key,
                  self.frame.video_key, self.frame.guide_key}
        missing = sorted(needed - set(outputs))
        if missing:
            raise ValueError(f"MsSlLoss: the model's outputs lack {missing}")
        n_videos = outputs[self.clip.video_key].shape[0]
        check_query_to_video(query_to_video, outputs[self.clip.query_key].shape[0], n_videos)
        pool = self.hard_pool(epoch)
        return {**self.clip_terms(outputs, query_to_video, pool, generator),
                **self.frame_terms(outputs, query_to_video, pool, generator)}

    def clip_terms(self, outputs, query_to_video, pool, generator) -> dict[str, torch.Tensor]:
        query, proposals = outputs[self.clip.query_key], outputs[self.clip.video_key]
        positives = positive_mask(query_to_video, proposals.shape[0])  # (Q, B)
        dots, cosines = branch_dot_and_cosine(query, proposals)  # (Q, B) each
        hardest = None if pool is None else 1  # video->query: their sorted()[0] once hard
        return {f"nce_{self.clip.name}": self.cfg.nce_weight_clip * multi_positive_nce(dots, positives),
                f"trip_{self.clip.name}": triplet_ranking(cosines, positives, self.cfg.margin,
                                                          pool, hardest, generator)}

    def frame_terms(self, outputs, query_to_video, pool, generator) -> dict[str, torch.Tensor]:
        query, guide = outputs[self.frame.query_key], outputs[self.frame.guide_key]
        key_clip = key_clip_index(query, outputs[self.frame.video_key], query_to_video)  # (Q,)
        own_guided = guide[query_to_video, key_clip]  # (Q, H)
        dots = query @ own_guided.t()  # (Q, Q)
        cosines = F.normalize(query, dim=-1) @ F.normalize(own_guided, dim=-1).t()  # (Q, Q)
        diagonal = torch.eye(len(query), dtype=torch.bool, device=query.device)
        return {f"nce_{self.frame.name}": self.cfg.nce_weight_frame * diagonal_symmetric_nce(dots),
                f"trip_{self.frame.name}": triplet_ranking(cosines, diagonal, self.cfg.margin,
                                                           pool, pool, generator)}


def build_ms_sl_loss(cfg: LossConfig, branches) -> MsSlLoss:
    """RETRIEVAL_LOSSES builder: (loss config, the model's score branches) -> MsSlLoss."""
    return MsSlLoss(cfg, branches)
