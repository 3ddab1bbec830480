"""The released GMMFormer-v2 / MSC_PRVR model (`model.name: gmmformer_v2`, the authors' reading).

Inputs, after `model.input_norm` (authors: every text token, frame token and clip token over its
L2 norm + 1e-5; the clip tokens are merged from the raw frame tokens first, then normalised):
- Frame branch: (B, Nf, D) frame tokens (exactly model.frame_tokens) -> input projection
  (LayerNorm, dropout, linear, ReLU) -> learned positions (LayerNorm, dropout) -> a
  `ParallelGMMBlock` of 1 + len(gauss_widths) complete transformer layers fused per position.
- Clip branch: the clip pooler's Nc tokens (uniform segments, or order-preserving token merging
  with log(size) on the attention logits) -> its own projection, positions (a table of
  model.frame_tokens rows, as the authors' max_ctx_l) and parallel block.
- Both blocks share one fusion token (authors' `weight_token`, initialised N(0, 1)).
- Query: input projection, positions, one post-norm self-attention layer without output
  projection, attention pooling with a bias-free scorer -> (Q, H).
Dropout: `input_dropout` in projections and positions, `dropout` everywhere else.
The authors' CBVA head `vproj_clip` is a parameter of the loss here (loss.cbva.head).

    model = create_model(ModelConfig(input_dim=768, hidden=384, frame_tokens=128, clip_tokens=32))
    out = model(frame_feats, query_feats, query_mask)  # the keys of prvr.models.gmmformer_lite

At the TVR shape (768 -> 384, 128 frame tokens, 32 clip tokens, 8 layers per block) the model has
30,512,800 parameters; with the CBVA head (147,840) 30,660,640, the authors' count exactly
(checked against their code on identical weights: outputs agree to float32 noise). The clip
branch's position table has frame_tokens rows of which it uses clip_tokens (authors' max_ctx_l).
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ModelConfig
from prvr.models.attention import init_weights
from prvr.models.base import TwoBranchModel
from prvr.models.common import ClipPooler, InputProjection, PositionalEmbedding
from prvr.models.gmmformer_lite import QueryEncoder
from prvr.models.parallel_gmm import ParallelGMMBlock


class ReleasedVideoBranch(nn.Module):
    """Projection, positions and a parallel GMM block for `n_tokens` tokens."""

    def __init__(self, cfg: ModelConfig, n_tokens: int):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, cfg.hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(cfg.frame_tokens, cfg.hidden, cfg.input_dropout)
        self.block = ParallelGMMBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.gauss_widths,
                                      n_tokens, cfg.fusion_temperature)

    def forward(self, feats: torch.Tensor, weight_token: torch.Tensor,
                sizes: torch.Tensor | None = None) -> torch.Tensor:
        return self.block(self.position(self.project(feats)), weight_token, sizes)  # (B, N, H)


class GMMFormerV2(TwoBranchModel):
    """The authors' model; see the module docstring. `clip_pooler` forms the clip tokens
    (default: the one cfg asks for, `make_clip_pooler(cfg)`). Videos have exactly frame_tokens tokens."""

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__(cfg, clip_pooler)
        self.query_encoder = QueryEncoder(cfg, output_projection=False, pool_bias=False)
        self.clip_branch = ReleasedVideoBranch(cfg, cfg.clip_tokens)
        self.frame_branch = ReleasedVideoBranch(cfg, cfg.frame_tokens)
        self.apply(init_weights)
        self.weight_token = nn.Parameter(torch.randn(1, 1, cfg.hidden))  # after init: N(0, 1)

    def encode_branches(self, frame_inputs: torch.Tensor, clip_inputs: torch.Tensor,
                        clip_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip_tokens = self.clip_branch(clip_inputs, self.weight_token, clip_sizes)  # (B, Nc, H); first, as theirs
        return self.frame_branch(frame_inputs, self.weight_token), clip_tokens  # (B, Nf, H)
