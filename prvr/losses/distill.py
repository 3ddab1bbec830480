"""DL-DKD's dynamic knowledge distillation (ICCV code: `clip_kl_only_pos` on the inheritance branch;
DL-DKD++: `compute_kl_loss(..., mode='frame_score')`, the same numbers): the frozen CLIP teacher's
per-frame scores of each caption in its own video are distilled into the student's.

Notation: Q captions, B videos of Nf frames; v(q) = query_to_video[q]. Student: the model's `query`
x (Q, H) and `frame_tokens` f (B, Nf, H) (DL-DKD: its inheritance branch). Teacher, no gradient:
the caption's frozen CLIP end-of-text embedding `query_eot` t (Q, D) and the raw CLIP frame
features `frame_feats` F (B, Nf, D), the frames the student sees; or, with DL-DKD's own teacher files
(I3D+RoBERTa students), their CLIP ViT-B/32 sentence vectors `teacher_eot` and frames `teacher_frames`.

    s_q[n] = cos(x_q, f_{v(q), n}),   c_q[n] = cos(t_q, F_{v(q), n})          (Q, Nf) each
    P_q = softmax(c_q / T),  S_q = softmax(s_q / T)                          over the Nf frames
    L   = sum_q KL(P_q || S_q) = sum_q sum_n P_q[n] (log P_q[n] - log S_q[n])
          (summed over captions and frames, as their reduction='sum' inside a sum over captions)
    term "distill" = weight * decay(epoch) * L

decay(epoch), epochs 0-based as their train.py sets model.weight before each epoch (DistillConfig):
    exp      rate ** epoch                                  (their exponential_k, 0.95)
    linear   max(1 - rate * epoch, 0.05)                    (their linear_k = -rate, linear_b = 1)
    sigmoid  k / (k + exp(100 epoch / k)),  k = rate        (their sigmoid_k, 800)
    none     1
T = loss.distill.temperature (their 0.2), weight = loss.distill.weight (ICCV loss_scale_weight,
++ kl_intra_weight: 0.1). Works with any model whose outputs have `query` and `frame_tokens`.

    loss = DistillLoss(DistillConfig(enabled=True))
    terms = loss(query=out["query"], frame_tokens=out["frame_tokens"], query_eot=batch["query_eot"],
                 frame_feats=batch["frame_feats"], query_to_video=q2v, epoch=3)   # {"distill": ...}
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config_losses import DistillConfig
from prvr.losses.retrieval import check_query_to_video

LINEAR_FLOOR = 0.05  # their weight_linear_decay: max(k * epoch + b, 0.05)


def decay_factor(cfg: DistillConfig, epoch: int) -> float:
    """The per-epoch factor of the distillation weight (module docstring); epoch is 0-based."""
    if cfg.decay == "exp":
        return cfg.rate ** epoch
    if cfg.decay == "linear":
        return max(1.0 - cfg.rate * epoch, LINEAR_FLOOR)
    if cfg.decay == "sigmoid":  # k / (k + e^x) = sigmoid(log k - x), without overflowing e^x
        z = math.log(cfg.rate) - 100.0 * epoch / cfg.rate
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    if cfg.decay == "none":
        return 1.0
    raise ValueError(f"loss.distill.decay: unknown decay {cfg.decay!r} (known: exp, linear, sigmoid, none)")


def own_video_cosines(vectors: torch.Tensor, tokens: torch.Tensor, query_to_video: torch.Tensor) -> torch.Tensor:
    """cos(vectors[q], tokens[v(q), n]) for every caption q and frame n: (Q, D), (B, Nf, D) -> (Q, Nf)."""
    unit_vectors = F.normalize(vectors, dim=-1)  # (Q, D)
    unit_tokens = F.normalize(tokens, dim=-1).index_select(0, query_to_video)  # (Q, Nf, D)
    return torch.einsum("qd,qnd->qn", unit_vectors, unit_tokens)


def frame_score_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over rows and frames of KL(softmax(teacher / T) || softmax(student / T)); (Q, Nf) each."""
    log_student = F.log_softmax(student / temperature, dim=-1)
    teacher_probs = F.softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_student, teacher_probs, reduction="sum")


def _check_inputs(query, frame_tokens, query_eot, frame_feats) -> None:
    """One-line ValueError unless the four tensors have the module docstring's shapes."""
    if query_eot is None or frame_feats is None:
        raise ValueError("DistillLoss needs the batch extras `query_eot` and `frame_feats` (the frozen CLIP teacher)")
    if query.dim() != 2 or frame_tokens.dim() != 3:
        raise ValueError(f"DistillLoss: expected query (Q, H) and frame_tokens (B, Nf, H), got "
                         f"{tuple(query.shape)} and {tuple(frame_tokens.shape)}")
    if query_eot.shape[:1] != query.shape[:1] or query_eot.dim() != 2:
        raise ValueError(f"query_eot: expected ({query.shape[0]}, D), got {tuple(query_eot.shape)}")
    if frame_feats.dim() != 3 or frame_feats.shape[:2] != frame_tokens.shape[:2]:
        raise ValueError(f"frame_feats: expected ({frame_tokens.shape[0]}, {frame_tokens.shape[1]}, D) like "
                         f"frame_tokens, got {tuple(frame_feats.shape)}")


class DistillLoss(nn.Module):
    """The distillation term of the module docstring: {"distill": weight * decay(epoch) * L}."""

    def __init__(self, cfg: DistillConfig):
        super().__init__()
        if not cfg.temperature > 0:
            raise ValueError(f"loss.distill.temperature: must be > 0, got {cfg.temperature}")
        decay_factor(cfg, 0)  # an unknown decay fails here, not in the first training step
        self.cfg = cfg

    def forward(self, *, query: torch.Tensor, frame_tokens: torch.Tensor, query_to_video: torch.Tensor,
                query_eot: torch.Tensor | None = None, frame_feats: torch.Tensor | None = None,
                teacher_eot: torch.Tensor | None = None, teacher_frames: torch.Tensor | None = None,
                epoch: int = 0, **unused) -> dict[str, torch.Tensor]:
        """Student query (Q, H) and frame_tokens (B, Nf, H); teacher query_eot (Q, D) and
        frame_feats (B, Nf, D), or, where the batch has DL-DKD's own teacher files, teacher_eot
        (Q, Dt) and teacher_frames (B, Nf, Dt) instead; query_to_video (Q,) long; epoch 0-based."""
        if teacher_eot is not None and teacher_frames is not None:
            query_eot, frame_feats = teacher_eot, teacher_frames
        _check_inputs(query, frame_tokens, query_eot, frame_feats)
        check_query_to_video(query_to_video, query.shape[0], frame_tokens.shape[0])
        with torch.no_grad():
            teacher = own_video_cosines(query_eot.to(query.dtype), frame_feats.to(query.dtype), query_to_video)
        student = own_video_cosines(query, frame_tokens, query_to_video)  # (Q, Nf)
        kl = frame_score_kl(student, teacher, self.cfg.temperature)
        return {"distill": self.cfg.weight * decay_factor(self.cfg, epoch) * kl}
