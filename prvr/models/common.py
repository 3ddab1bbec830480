"""Pieces shared by the PRVR models: input checks, L2 input normalisation, the clip poolers
(uniform segments or order-preserving token merging), the input projection and the learned
positional embedding (the GMMFormer family's LinearLayer and TrainablePositionalEncoding).

    pooled = make_clip_pooler(cfg)(frame_feats, cfg.clip_tokens)   # PooledTokens, (B, Nc, D)
    x = l2_normalise(frame_feats)                                  # authors' x / (||x|| + 1e-5)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from prvr.config import ModelConfig, query_dim
from prvr.errors import PrvrError
from prvr.models.dropout import Dropout
from prvr.models.token_merging import MergingError, check_stages, merge_stages

INPUT_NORM_EPS = 1e-5  # the authors' l2_normalize_np_array: x / (||x|| + 1e-5)


class ModelInputError(PrvrError, ValueError):
    """Model input of the wrong shape, size or type; the message says which tensor and why."""


class PooledTokens(NamedTuple):
    """Coarse tokens built from frame tokens, in temporal order.

    features: (B, Nc, D) token features; sizes: (B, Nc) number of frames each token holds (float);
    frame_to_token: (B, Nf) long, index of the token each frame belongs to.
    """
    features: torch.Tensor
    sizes: torch.Tensor
    frame_to_token: torch.Tensor


ClipPooler = Callable[[torch.Tensor, int], PooledTokens]


def uniform_segments(n_frames: int, n_clips: int, device=None) -> torch.Tensor:
    """(Nc, Nf) bool membership of frames in Nc fixed, contiguous, near-equal segments.

    Segment i covers frames [floor(i Nf / Nc), floor((i + 1) Nf / Nc)), at least one frame, so
    with Nc > Nf frames are repeated rather than leaving empty segments.
    """
    if n_frames < 1 or n_clips < 1:
        raise ModelInputError(f"cannot pool {n_frames} frames into {n_clips} clips")
    idx = torch.arange(n_clips, device=device)
    start = idx * n_frames // n_clips  # (Nc,)
    end = torch.maximum((idx + 1) * n_frames // n_clips, start + 1)  # (Nc,)
    frames = torch.arange(n_frames, device=device)  # (Nf,)
    return (frames >= start[:, None]) & (frames < end[:, None])  # (Nc, Nf)


def uniform_clip_pool(frame_feats: torch.Tensor, n_clips: int) -> PooledTokens:
    """Mean-pool (B, Nf, D) frame features over `n_clips` fixed uniform segments (baseline)."""
    b, n_frames, _ = frame_feats.shape
    member = uniform_segments(n_frames, n_clips, frame_feats.device)  # (Nc, Nf)
    sizes = member.sum(dim=1).to(frame_feats.dtype)  # (Nc,)
    weights = member.to(frame_feats.dtype) / sizes[:, None]  # (Nc, Nf), rows sum to 1
    pooled = torch.einsum("cf,bfd->bcd", weights, frame_feats)  # (B, Nc, D)
    labels = member.to(torch.uint8).argmax(dim=0)  # (Nf,) first segment holding each frame
    return PooledTokens(pooled, sizes.repeat(b, 1), labels.repeat(b, 1))


class MergingClipPooler:
    """Clip pooler of order-preserving token merging: (B, Nf, D) frame features -> the merged
    tokens after `stages` (the last stage must be the clip-branch length n_clips)."""

    def __init__(self, stages):
        self.stages = check_stages(stages, "model.merging.stages")

    def __call__(self, frame_feats: torch.Tensor, n_clips: int) -> PooledTokens:
        if self.stages[-1] != n_clips:
            raise MergingError(f"model.merging.stages end at {self.stages[-1]} tokens, but the "
                               f"clip branch has {n_clips} (model.clip_tokens)")
        with torch.autocast(frame_feats.device.type, enabled=False):  # in float32 under a bfloat16 step:
            merged = merge_stages(frame_feats.float(), self.stages)  # the authors merge in the data loader
        return PooledTokens(merged.features, merged.sizes, merged.frame_to_token)

    def __repr__(self) -> str:
        return f"MergingClipPooler(stages={self.stages})"


def make_clip_pooler(cfg: ModelConfig) -> ClipPooler:
    """The clip pooler `cfg` asks for: token merging when cfg.merging.enabled, else uniform."""
    return MergingClipPooler(cfg.merging.stages) if cfg.merging.enabled else uniform_clip_pool


class InputProjection(nn.Module):
    """Features -> hidden: LayerNorm, dropout, linear, ReLU (the GMMFormer family's LinearLayer)."""

    input_layernorm = "net.0"  # the submodule the authors' code names LayerNorm

    def __init__(self, input_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(input_dim), Dropout(dropout),
                                 nn.Linear(input_dim, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionalEmbedding(nn.Module):
    """Learned positional embedding added to tokens, then LayerNorm and dropout."""

    input_layernorm = "norm"  # the submodule the authors' code names LayerNorm

    def __init__(self, max_len: int, hidden: int, dropout: float):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)  # (N,)
        return self.drop(self.norm(x + self.embedding(positions)))  # (B, N, H)


def l2_normalise(x: torch.Tensor, eps: float = INPUT_NORM_EPS) -> torch.Tensor:
    """(..., D) -> x / (||x|| + eps) over the last axis, as the authors' loader does."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def normalise_inputs(cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """The input normalisation `cfg.input_norm` asks for ("l2" or "none")."""
    return l2_normalise(x) if cfg.input_norm == "l2" else x


def check_query_input(cfg: ModelConfig, query_feats: torch.Tensor, query_mask: torch.Tensor) -> None:
    """(Q, L, D) features and (Q, L) bool mask: shapes, length <= max_query_len, no empty query."""
    if query_feats.dim() != 3 or query_feats.shape[-1] != query_dim(cfg):
        raise ModelInputError(f"query_feats: expected (Q, L, {query_dim(cfg)}), "
                              f"got {tuple(query_feats.shape)}")
    if query_mask.dtype != torch.bool or query_mask.shape != query_feats.shape[:2]:
        raise ModelInputError(f"query_mask: expected bool {tuple(query_feats.shape[:2])}, "
                              f"got {query_mask.dtype} {tuple(query_mask.shape)}")
    if query_feats.shape[1] > cfg.max_query_len:
        raise ModelInputError(f"query_feats: {query_feats.shape[1]} tokens exceed "
                              f"model.max_query_len={cfg.max_query_len}")
    empty = (~query_mask.any(dim=1)).nonzero()
    if len(empty):
        raise ModelInputError(f"query_mask: query {int(empty[0])} has no valid token")


def check_video_input(cfg: ModelConfig, frame_feats: torch.Tensor, min_tokens: int) -> None:
    """(B, Nf, D) features with min_tokens <= Nf <= model.frame_tokens."""
    if frame_feats.dim() != 3 or frame_feats.shape[-1] != cfg.input_dim:
        raise ModelInputError(f"frame_feats: expected (B, Nf, {cfg.input_dim}), "
                              f"got {tuple(frame_feats.shape)}")
    if not min_tokens <= frame_feats.shape[1] <= cfg.frame_tokens:
        expected = (f"{cfg.frame_tokens}" if min_tokens == cfg.frame_tokens
                    else f"{min_tokens}..{cfg.frame_tokens}")
        raise ModelInputError(f"frame_feats: {frame_feats.shape[1]} frame tokens, expected "
                              f"{expected} (model.frame_tokens)")


def check_model_config(cfg: ModelConfig) -> None:
    """Reject model settings that cannot build a model, naming the key."""
    positive = {"input_dim": cfg.input_dim, "text_input_dim": query_dim(cfg), "hidden": cfg.hidden, "heads": cfg.heads,
                "frame_tokens": cfg.frame_tokens, "clip_tokens": cfg.clip_tokens,
                "max_query_len": cfg.max_query_len}
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"model.{key} must be >= 1, got {value}")
    if cfg.hidden % cfg.heads:
        raise ValueError(f"model.hidden={cfg.hidden} is not a multiple of model.heads={cfg.heads}")
    if not cfg.gauss_widths or any(w <= 0 for w in cfg.gauss_widths):
        raise ValueError(f"model.gauss_widths must be positive numbers, got {cfg.gauss_widths}")
    for key in ("dropout", "input_dropout"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ValueError(f"model.{key} must be in [0, 1), got {getattr(cfg, key)}")
    if not cfg.fusion_temperature > 0:
        raise ValueError(f"model.fusion_temperature must be > 0, got {cfg.fusion_temperature}")
    if cfg.merging.enabled:
        check_merging_stages(cfg)


def check_merging_stages(cfg: ModelConfig) -> None:
    """Merging stages: strictly decreasing, from at most frame_tokens down to clip_tokens."""
    stages = check_stages(cfg.merging.stages, "model.merging.stages")
    if stages[-1] != cfg.clip_tokens:
        raise MergingError(f"model.merging.stages must end at model.clip_tokens="
                           f"{cfg.clip_tokens}, got {stages}")
    if stages[0] > cfg.frame_tokens:
        raise MergingError(f"model.merging.stages must start at most at model.frame_tokens="
                           f"{cfg.frame_tokens}, got {stages}")


def input_layernorm_names(model: nn.Module) -> set[str]:
    """Names of the LayerNorm parameters inside every InputProjection and PositionalEmbedding of
    `model` (their `input_layernorm` submodule): the modules the authors' code names "LayerNorm",
    which their optimiser does not decay."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, (InputProjection, PositionalEmbedding)):
            norm = f"{prefix}.{module.input_layernorm}"
            names.update(f"{norm}.{p}" for p, _ in model.get_submodule(norm).named_parameters())
    return names
