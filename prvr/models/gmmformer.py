"""GMMFormer-v2-style PRVR model: a query encoder and a two-branch (frame / clip) video encoder.

Video input: features already resampled to `cfg.frame_tokens` frame tokens by the data loader.
- Frame branch: the frame tokens, projected to `hidden`, positional embedding, one GMM block.
- Clip branch: `cfg.clip_tokens` clip tokens formed from the frame features by a *clip pooler*
  (baseline: `uniform_clip_pool`, fixed-length mean-pooled segments as in MS-SL / GMMFormer; with
  `cfg.merging.enabled`: `MergingClipPooler`, order-preserving token merging through
  `cfg.merging.stages`, prvr.models.token_merging), then projected, positional embedding, one GMM
  block that also receives the token sizes (centres of the Gaussian windows and ToMe's log(size)
  term on the attention logits, so a token holding s frames counts as s keys).
- Query: tokens projected, positional embedding, one self-attention layer with key padding mask,
  attention pooling -> one vector.

    model = create_model(ModelConfig(input_dim=64, hidden=128, frame_tokens=32, clip_tokens=8))
    out = model(frame_feats, query_feats, query_mask)   # (B, Nf, D), (Q, L, D), (Q, L) bool
    out["query"], out["frame_tokens"], out["clip_tokens"]  # (Q, H), (B, Nf, H), (B, Nc, H)

Output keys (`encode_videos` + `encode_queries`; the losses take what they need by keyword):
    query            (Q, H)       pooled query vector
    frame_tokens     (B, Nf, H)   encoded frame tokens (fine branch)
    clip_tokens      (B, Nc, H)   encoded clip tokens (coarse branch)
    clip_sizes       (B, Nc)      frames each clip token holds (float)
    frame_to_clip    (B, Nf) long clip token holding each frame (non-decreasing: order kept)
    merged_inputs    (B, Nc, D)   the clip branch's input features (merged or pooled frame features,
                                  not normalised): the features that decide further merges and
                                  build adaptive CBVA's similarity graph (authors: clip_video_feat)
    segment_tokens   (B, S, H)    CBVA's coarse segments; here = clip_tokens (S = Nc)
    frame_to_segment (B, Nf) long segment holding each frame; here = frame_to_clip
    segment_mask     (B, S) bool  real segments; here all True
Adaptive CBVA ("segments") merges clip_tokens further per video with
`token_merging.merge_to_counts(clip_tokens, clip_sizes, frame_to_clip, counts, stages,
metric=merged_inputs)`, which returns segments in the same padded form.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from prvr.errors import PrvrError
from prvr.config import ModelConfig
from prvr.models.attention import (AttentionPooling, GaussianMixtureAttention, MultiHeadAttention,
                                   TransformerLayer, init_weights)
from prvr.models.token_merging import MergingError, check_stages, merge_stages


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
        merged = merge_stages(frame_feats, self.stages)
        return PooledTokens(merged.features, merged.sizes, merged.frame_to_token)

    def __repr__(self) -> str:
        return f"MergingClipPooler(stages={self.stages})"


def make_clip_pooler(cfg: ModelConfig) -> ClipPooler:
    """The clip pooler `cfg` asks for: token merging when cfg.merging.enabled, else uniform."""
    return MergingClipPooler(cfg.merging.stages) if cfg.merging.enabled else uniform_clip_pool


class InputProjection(nn.Module):
    """Features -> hidden: LayerNorm, dropout, linear, ReLU (the GMMFormer family's LinearLayer)."""

    def __init__(self, input_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(input_dim), nn.Dropout(dropout),
                                 nn.Linear(input_dim, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionalEmbedding(nn.Module):
    """Learned positional embedding added to tokens, then LayerNorm and dropout."""

    def __init__(self, max_len: int, hidden: int, dropout: float):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)  # (N,)
        return self.drop(self.norm(x + self.embedding(positions)))  # (B, N, H)


class VideoBranch(nn.Module):
    """One granularity of the video encoder: projection, positions, one GMM block."""

    def __init__(self, cfg: ModelConfig, max_tokens: int):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, cfg.hidden, cfg.dropout)
        self.position = PositionalEmbedding(max_tokens, cfg.hidden, cfg.dropout)
        attention = GaussianMixtureAttention(cfg.hidden, cfg.heads, cfg.gauss_widths, cfg.dropout)
        self.block = TransformerLayer(attention, cfg.hidden, cfg.dropout)

    def forward(self, feats: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        return self.block(self.position(self.project(feats)), sizes=sizes)  # (B, N, H)


class QueryEncoder(nn.Module):
    """Query token features (Q, L, D) + mask (Q, L) -> one vector (Q, H)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, cfg.hidden, cfg.dropout)
        self.position = PositionalEmbedding(cfg.max_query_len, cfg.hidden, cfg.dropout)
        self.layer = TransformerLayer(MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout),
                                      cfg.hidden, cfg.dropout)
        self.pool = AttentionPooling(cfg.hidden)

    def forward(self, query_feats: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """Every per-token step runs on the valid tokens only (packed, (T, ...)): padded tokens
        never reach a valid token's output (masked keys, zero pooling weight), so skipping them
        changes nothing but the time (captions are much shorter than max_query_len)."""
        q, length, _ = query_feats.shape
        token_index = query_mask.reshape(-1).nonzero().squeeze(1)  # (T,) flat q * L + l
        feats = query_feats.reshape(q * length, -1)[token_index]  # (T, D)
        positions = token_index % length  # (T,)
        x = self.project(feats)  # (T, H)
        pos = self.position
        x = pos.drop(pos.norm(x + pos.embedding(positions)))  # as PositionalEmbedding, packed
        x = self.layer.forward_packed(x, token_index, query_mask)  # (T, H)
        return self.pool.forward_packed(x, token_index, query_mask)  # (Q, H)

    def forward_padded(self, query_feats: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """Reference: the same encoder on the padded (Q, L) layout (slower)."""
        x = self.position(self.project(query_feats))  # (Q, L, H)
        x = self.layer(x, key_padding_mask=query_mask)
        return self.pool(x, query_mask)  # (Q, H)


class GMMFormerV2(nn.Module):
    """The PRVR model; see the module docstring. `clip_pooler` forms the clip tokens (default:
    the one cfg asks for, `make_clip_pooler(cfg)`)."""

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.clip_pooler = make_clip_pooler(cfg) if clip_pooler is None else clip_pooler
        self.query_encoder = QueryEncoder(cfg)
        self.frame_branch = VideoBranch(cfg, cfg.frame_tokens)
        self.clip_branch = VideoBranch(cfg, cfg.clip_tokens)
        self.apply(init_weights)

    def encode_videos(self, frame_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, Nf, D) -> the video keys of the module docstring: frame_tokens, clip_tokens,
        clip_sizes, frame_to_clip, merged_inputs, segment_tokens, frame_to_segment, segment_mask."""
        self._check_videos(frame_feats)
        pooled = self.clip_pooler(frame_feats, self.cfg.clip_tokens)
        frame_tokens = self.frame_branch(frame_feats)  # (B, Nf, H); first: same dropout draws
        clip_tokens = self.clip_branch(pooled.features, sizes=pooled.sizes)  # (B, Nc, H)
        return {"frame_tokens": frame_tokens, "clip_tokens": clip_tokens,
                "clip_sizes": pooled.sizes, "frame_to_clip": pooled.frame_to_token,
                "merged_inputs": pooled.features, "segment_tokens": clip_tokens,
                "frame_to_segment": pooled.frame_to_token,
                "segment_mask": torch.ones(clip_tokens.shape[:2], dtype=torch.bool,
                                           device=clip_tokens.device)}

    def encode_queries(self, query_feats: torch.Tensor,
                       query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(Q, L, D) features and (Q, L) bool mask (True = valid) -> {"query": (Q, H)}."""
        self._check_queries(query_feats, query_mask)
        return {"query": self.query_encoder(query_feats, query_mask)}

    def forward(self, frame_feats: torch.Tensor, query_feats: torch.Tensor,
                query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch of videos and queries; the dict has the keys of both encoders."""
        return {**self.encode_queries(query_feats, query_mask), **self.encode_videos(frame_feats)}

    def _check_videos(self, frame_feats: torch.Tensor) -> None:
        cfg = self.cfg
        if frame_feats.dim() != 3 or frame_feats.shape[-1] != cfg.input_dim:
            raise ModelInputError(f"frame_feats: expected (B, Nf, {cfg.input_dim}), "
                                  f"got {tuple(frame_feats.shape)}")
        if not 1 <= frame_feats.shape[1] <= cfg.frame_tokens:
            raise ModelInputError(f"frame_feats: {frame_feats.shape[1]} frame tokens, expected "
                                  f"1..{cfg.frame_tokens} (model.frame_tokens)")

    def _check_queries(self, query_feats: torch.Tensor, query_mask: torch.Tensor) -> None:
        cfg = self.cfg
        if query_feats.dim() != 3 or query_feats.shape[-1] != cfg.input_dim:
            raise ModelInputError(f"query_feats: expected (Q, L, {cfg.input_dim}), "
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


def check_config(cfg: ModelConfig) -> None:
    """Reject model settings that cannot build a model, naming the key."""
    positive = {"input_dim": cfg.input_dim, "hidden": cfg.hidden, "heads": cfg.heads,
                "frame_tokens": cfg.frame_tokens, "clip_tokens": cfg.clip_tokens,
                "max_query_len": cfg.max_query_len}
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"model.{key} must be >= 1, got {value}")
    if cfg.hidden % cfg.heads:
        raise ValueError(f"model.hidden={cfg.hidden} is not a multiple of model.heads={cfg.heads}")
    if not cfg.gauss_widths or any(w <= 0 for w in cfg.gauss_widths):
        raise ValueError(f"model.gauss_widths must be positive numbers, got {cfg.gauss_widths}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
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
