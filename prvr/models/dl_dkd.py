"""The DL-DKD student (`model.name: dl_dkd`; Dong et al., ICCV 2023, "Dual Learning with Dynamic
Knowledge Distillation for PRVR", released code HuiGuanLab/DL-DKD, branch `iccv`).

Two students of the same form, each a max-over-frames retrieval model:
- inheritance branch (`model.hidden` units; their B_*): distilled from the frozen CLIP teacher
  (loss.distill, prvr.losses.distill) and trained by the retrieval loss;
- exploration branch (also `model.hidden` units; their A_*, present when
  `model.dl_dkd.exploration_branch`, their --double_branch): retrieval loss only.

Per branch, after `model.input_norm` (their loader: every token over its L2 norm + 1e-5):
- video: (B, Nf, D) frames -> input projection (LayerNorm, dropout, linear, ReLU) -> learned
  positions (LayerNorm, dropout) -> one BertAttention layer (prvr.models.residual_attention) -> out mapping linear H -> H
  -> tokens (B, Nf, H);
- query: (Q, L, D) tokens -> input projection -> positions -> one BertAttention layer (prvr.models.residual_attention)
  -> attention pooling (bias-free scorer, padded tokens weight 0) -> (Q, H).
The exploration query reuses the inheritance branch's query input projection, as the ICCV code
does (`A_query_input_proj` is built there but never called), so the two widths are equal.

Score of each branch: s(q, v) = max_n cos(query[q], tokens[v, n]); the model's score is
eval.w_clip * s_exploration + eval.w_frame * s_inheritance (their test: 0.3 and 0.7). Without an
exploration branch both score branches are the inheritance branch: the score is
(w_clip + w_frame) * s_inheritance, which ranks exactly as their single-branch evaluation (the
inheritance score alone), and RetrievalLoss keeps the second branch's terms (nce weight
loss.nce_weight_frame) under the same names, i.e. their inher_trip + inher_nce.

Outputs (encode_queries + encode_videos):
    query               (Q, H)       inheritance query (the collapse analysis reads it)
    frame_tokens        (B, Nf, H)   inheritance frame tokens, aligned with the input frames
    exploration_query   (Q, H)       only with an exploration branch
    exploration_tokens  (B, Nf, H)   only with an exploration branch
No clip tokens. At the TVR shape (768 in, 384 / 384 units, 128 frames, 77 query positions) the model
has 3,715,968 parameters: their count at the same shape less their unused A_query_input_proj.

    cfg = ModelConfig(name="dl_dkd", input_dim=768, hidden=384, frame_tokens=128)
    out = create_model(cfg)(frame_feats, query_feats, query_mask)   # the keys above
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ModelConfig, query_dim
from prvr.models.attention import AttentionPooling, init_weights
from prvr.models.base import ScoreBranch
from prvr.models.common import (InputProjection, PositionalEmbedding,
                                check_model_config, check_query_input, check_video_input,
                                input_layernorm_names, normalise_inputs)
from prvr.models.residual_attention import ResidualAttention, bert_attention

INHERITANCE = ScoreBranch("inheritance", "query", "frame_tokens")
EXPLORATION = ScoreBranch("exploration", "exploration_query", "exploration_tokens")


class QueryBranch(nn.Module):
    """Projected query tokens (Q, L, H) + mask (Q, L) -> positions -> attention layer -> pooled (Q, H)."""

    def __init__(self, cfg: ModelConfig, hidden: int):
        super().__init__()
        self.position = PositionalEmbedding(cfg.max_query_len, hidden, cfg.input_dropout)
        self.layer = bert_attention(hidden, cfg.heads, cfg.dropout)
        self.pool = AttentionPooling(hidden, bias=False)

    def forward(self, projected: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        x = self.layer(self.position(projected), key_padding_mask=query_mask)  # (Q, L, H)
        return self.pool(x, query_mask)  # (Q, H)


class VideoBranch(nn.Module):
    """Frames (B, Nf, D) -> projection -> positions -> attention layer -> out mapping -> (B, Nf, H)."""

    def __init__(self, cfg: ModelConfig, hidden: int):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(cfg.frame_tokens, hidden, cfg.input_dropout)
        self.layer = bert_attention(hidden, cfg.heads, cfg.dropout)
        self.out_mapping = nn.Linear(hidden, hidden)  # their *_mapping_linear, applied before scoring

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.out_mapping(self.layer(self.position(self.project(frames))))  # (B, Nf, H)


class DLDKD(nn.Module):
    """The DL-DKD student; see the module docstring. Videos may have 1..frame_tokens frames."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_model_config(cfg)
        self.cfg = cfg
        self.has_exploration = cfg.dl_dkd.exploration_branch
        self.query_project = InputProjection(query_dim(cfg), cfg.hidden, cfg.input_dropout)  # shared (ICCV)
        self.inherit_query = QueryBranch(cfg, cfg.hidden)
        self.inherit_video = VideoBranch(cfg, cfg.hidden)
        if self.has_exploration:
            self.explore_query = QueryBranch(cfg, cfg.hidden)
            self.explore_video = VideoBranch(cfg, cfg.hidden)
        self.apply(init_weights)  # their reset_parameters: N(0, 0.02), zero biases, unit LayerNorms
        # weighted by (eval.w_clip, eval.w_frame); without exploration: the inheritance score twice
        self.score_branches = (EXPLORATION if self.has_exploration else INHERITANCE, INHERITANCE)

    def encode_videos(self, frame_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, Nf, D) raw frame features -> frame_tokens (B, Nf, H) [, exploration_tokens (B, Nf, H) ]."""
        check_video_input(self.cfg, frame_feats, 1)
        frames = normalise_inputs(self.cfg, frame_feats)
        out = {"frame_tokens": self.inherit_video(frames)}
        if self.has_exploration:
            out["exploration_tokens"] = self.explore_video(frames)
        return out

    def encode_queries(self, query_feats: torch.Tensor, query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(Q, L, D) features, (Q, L) bool mask -> query (Q, H) [, exploration_query (Q, H) ]."""
        check_query_input(self.cfg, query_feats, query_mask)
        tokens = normalise_inputs(self.cfg, query_feats)
        out = {"query": self.inherit_query(self.query_project(tokens), query_mask)}
        if self.has_exploration:  # a second call: its own dropout mask, as their two calls
            out["exploration_query"] = self.explore_query(self.query_project(tokens), query_mask)
        return out

    def forward(self, frame_feats: torch.Tensor, query_feats: torch.Tensor,
                query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch of videos and queries; the dict has the keys of both encoders."""
        return {**self.encode_queries(query_feats, query_mask), **self.encode_videos(frame_feats)}

    def no_weight_decay(self) -> set[str]:
        """The parameters their optimiser leaves undecayed besides biases: every module their code
        names LayerNorm (input projections, positional embeddings and the attention layers' norms)."""
        names = input_layernorm_names(self)
        for prefix, module in self.named_modules():
            if isinstance(module, ResidualAttention):
                names.update(f"{prefix}.norm.{p}" for p, _ in module.norm.named_parameters())
        return names


__all__ = ["DLDKD", "EXPLORATION", "INHERITANCE"]
