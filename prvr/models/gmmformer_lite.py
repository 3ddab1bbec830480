"""The lighter GMMFormer-v2-style PRVR model (`model.name: gmmformer_v2_lite`), this project's own:
a query encoder and a two-branch (frame / clip) video encoder. It is NOT the authors' architecture
(that is prvr.models.gmmformer_v2): one attention module runs every Gaussian window (added to the
logits as a log prior, centred on the tokens' real time) plus one free window, with one FFN and a
per-token linear fusion of the windows; about a third of the authors' parameters.

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
                                  after model.input_norm): they decide further merges and build
                                  adaptive CBVA's similarity graph (authors: clip_video_feat)
    segment_tokens   (B, S, H)    CBVA's coarse segments; here = clip_tokens (S = Nc)
    frame_to_segment (B, Nf) long segment holding each frame; here = frame_to_clip
    segment_mask     (B, S) bool  real segments; here all True
Adaptive CBVA ("segments") merges clip_tokens further per video with
`token_merging.merge_to_counts(clip_tokens, clip_sizes, frame_to_clip, counts, stages,
metric=merged_inputs)`, which returns segments in the same padded form.
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ModelConfig, query_dim
from prvr.models.attention import (AttentionPooling, GaussianMixtureAttention, MultiHeadAttention,
                                   TransformerLayer, init_weights)
from prvr.models.base import TwoBranchModel
from prvr.models.common import ClipPooler, InputProjection, PositionalEmbedding


class VideoBranch(nn.Module):
    """One granularity of the video encoder: projection, positions, one GMM block."""

    def __init__(self, cfg: ModelConfig, max_tokens: int):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, cfg.hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(max_tokens, cfg.hidden, cfg.input_dropout)
        attention = GaussianMixtureAttention(cfg.hidden, cfg.heads, cfg.gauss_widths, cfg.dropout)
        self.block = TransformerLayer(attention, cfg.hidden, cfg.dropout)

    def forward(self, feats: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        return self.block(self.position(self.project(feats)), sizes=sizes)  # (B, N, H)


class QueryEncoder(nn.Module):
    """Query token features (Q, L, D) + mask (Q, L) -> one vector (Q, H).

    The authors' query encoder is this with output_projection=False (their attention has no
    output linear) and pool_bias=False (their pooling scorer has no bias). `layer`: another encoder
    layer with forward and forward_packed (GMMFormer v1's attention-only layer) instead of the
    transformer layer."""

    def __init__(self, cfg: ModelConfig, output_projection: bool = True, pool_bias: bool = True,
                 layer: nn.Module | None = None):
        super().__init__()
        self.project = InputProjection(query_dim(cfg), cfg.hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(cfg.max_query_len, cfg.hidden, cfg.input_dropout)
        if layer is None:
            attention = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout, output_projection)
            layer = TransformerLayer(attention, cfg.hidden, cfg.dropout)
        self.layer = layer
        self.pool = AttentionPooling(cfg.hidden, bias=pool_bias)

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


class GMMFormerV2Lite(TwoBranchModel):
    """The lighter PRVR model; see the module docstring. `clip_pooler` forms the clip tokens
    (default: the one cfg asks for, `make_clip_pooler(cfg)`). Videos may have 1..frame_tokens tokens."""

    min_frame_tokens = 1

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__(cfg, clip_pooler)
        self.query_encoder = QueryEncoder(cfg)
        self.frame_branch = VideoBranch(cfg, cfg.frame_tokens)
        self.clip_branch = VideoBranch(cfg, cfg.clip_tokens)
        self.apply(init_weights)

    def encode_branches(self, frame_inputs: torch.Tensor, clip_inputs: torch.Tensor,
                        clip_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frame_tokens = self.frame_branch(frame_inputs)  # (B, Nf, H)
        return frame_tokens, self.clip_branch(clip_inputs, sizes=clip_sizes)  # (B, Nc, H)
