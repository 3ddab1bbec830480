"""GMMFormer v1 (Wang et al., AAAI 2024; code huangmozhi9527/GMMFormer), `model.name: gmmformer_v1`.

The baseline's encoder in this project's CLIP-feature setting. Its pieces:

- Attention layer (their `BertAttention`): multi-head self-attention with separate query/key/value
  projections, optional Gaussian window, dropout on the attention probabilities, then an output
  dense layer and one post-norm residual, and NO feed-forward network:

      y = LN(x + drop(W_o attn_w(x)))

  The window of width w (`parallel_gmm.gaussian_window`, the same function as GMMFormer v2)
  MULTIPLIES the scaled logits before the softmax: logits[i, j] * g_w[i, j], with g_w[i, j] =
  exp(-(t_j - c_i)^2 / (2 s^2)) scaled to a row maximum of 1, query centres c_i = i / N, key grid
  t_j = j / (N - 1), s = max(w, 0.01) / 9.
- `GMMBlock`: 1 + len(gauss_widths) such layers on the same input (the first without window;
  theirs: widths 0.5, 1.0, 5.0), outputs averaged with equal weights (v2 instead fuses complete
  transformer layers per position with a learned token).
- Clip branch: the clip pooler's Nc tokens (uniform mean pooling, their `average_to_fixed_length`
  into map_size 32 clips) -> input projection (LayerNorm, dropout, linear, ReLU) -> learned
  positions (a table of model.frame_tokens rows, their max_ctx_l) -> two GMMBlocks in sequence.
- Frame branch: the frame tokens -> its own projection, positions, two GMMBlocks -> attention
  pooling with a bias-free scorer to ONE video vector (their `get_modularized_frames`).
- Query: input projection, positions (model.max_query_len rows), one attention layer without
  window, attention pooling with a bias-free scorer -> (Q, H).

Score (`score_branches`): s = w_clip * max_n cos(q, clip_n) + w_frame * cos(q, video_vector), their
clip_scale_w / frame_scale_w (0.7 / 0.3); the max over the single `video_vector` token is that cosine.

Outputs (besides the keys of prvr.models.gmmformer_lite's docstring): `video_vector` (B, 1, H);
`frame_tokens` (B, Nf, H) are the encoded frames before the pooling (collapse analysis only).

    model = create_model(ModelConfig(name="gmmformer_v1", gauss_widths=(0.5, 1.0, 5.0), ...))
    out = model(frame_feats, query_feats, query_mask)
    out["query"], out["clip_tokens"], out["video_vector"]    # (Q, H), (B, Nc, H), (B, 1, H)

At the TVR shape (768 -> 384, 128 frame tokens, 32 clip tokens, 4 heads, widths 0.5/1/5) and their
30 query positions (max_desc_l) the model has 11,069,568 parameters, their GMMFormer_Net's count
exactly (with the CLIP setting's 77 positions, model.max_query_len: 11,087,616). Side by side with
their code on identical weights, query, clip, frame tokens and the pooled video vector agree to 2e-6.
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ModelConfig
from prvr.models.attention import AttentionPooling, init_weights
from prvr.models.base import ScoreBranch, TwoBranchModel
from prvr.models.common import ClipPooler, InputProjection, PositionalEmbedding, input_layernorm_names
from prvr.models.gmmformer_lite import QueryEncoder
from prvr.models.parallel_gmm import WindowedAttention
from prvr.models.residual_attention import ResidualAttention, bert_attention

BLOCKS_PER_BRANCH = 2  # their clip_encoder + clip_encoder_2, frame_encoder_1 + frame_encoder_2


class WindowedSelfAttention(nn.Module):
    """Self-attention with an optional multiplicative Gaussian window (`WindowedAttention`: separate
    query / key-value projections, window on the scaled logits, dropout on the probabilities)
    followed by the output dense layer of their BertSelfOutput. (B, N, H) -> (B, N, H)."""

    def __init__(self, hidden: int, heads: int, dropout: float, width: float | None = None):
        super().__init__()
        self.attention = WindowedAttention(hidden, heads, dropout, width)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attention(x, x))


class GMMBlock(nn.Module):
    """Their GMMBlock: one attention layer without window and one per Gaussian width, all on the
    same input, outputs averaged with equal weights. (B, N, H) -> (B, N, H)."""

    def __init__(self, hidden: int, heads: int, dropout: float, widths):
        super().__init__()
        self.layers = nn.ModuleList(
            ResidualAttention(WindowedSelfAttention(hidden, heads, dropout, width), hidden, dropout)
            for width in (None, *(float(w) for w in widths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([layer(x) for layer in self.layers]).mean(dim=0)  # (B, N, H)


class V1VideoBranch(nn.Module):
    """Projection, learned positions and two GMMBlocks in sequence."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.project = InputProjection(cfg.input_dim, cfg.hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(cfg.frame_tokens, cfg.hidden, cfg.input_dropout)
        self.blocks = nn.ModuleList(GMMBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.gauss_widths)
                                    for _ in range(BLOCKS_PER_BRANCH))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.position(self.project(feats))  # (B, N, H)
        for block in self.blocks:
            x = block(x)
        return x


def v1_query_encoder(cfg: ModelConfig) -> QueryEncoder:
    """Query tokens (Q, L, D) + mask (Q, L) -> (Q, H): projection, positions, one attention layer
    (their BertAttention: q/k/v, output dense, residual LayerNorm, no FFN), bias-free attention pooling."""
    return QueryEncoder(cfg, pool_bias=False, layer=bert_attention(cfg.hidden, cfg.heads, cfg.dropout))


class GMMFormerV1(TwoBranchModel):
    """GMMFormer v1; see the module docstring. Videos have exactly model.frame_tokens tokens."""

    score_branches = (ScoreBranch("clip", "query", "clip_tokens"),
                      ScoreBranch("frame", "query", "video_vector"))

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__(cfg, clip_pooler)
        self.query_encoder = v1_query_encoder(cfg)
        self.clip_branch = V1VideoBranch(cfg)
        self.frame_branch = V1VideoBranch(cfg)
        self.frame_pool = AttentionPooling(cfg.hidden, bias=False)  # their modular_vector_mapping_2
        self.apply(init_weights)

    def encode_branches(self, frame_inputs: torch.Tensor, clip_inputs: torch.Tensor,
                        clip_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # clip_sizes unused: v1 has no log(size) term (uniform clips of near-equal size)
        clip_tokens = self.clip_branch(clip_inputs)  # (B, Nc, H); first, as theirs
        return self.frame_branch(frame_inputs), clip_tokens  # (B, Nf, H)

    def encode_videos(self, frame_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """The keys of TwoBranchModel.encode_videos plus video_vector (B, 1, H): the frame tokens
        attention-pooled to one vector (the frame branch's score token)."""
        out = super().encode_videos(frame_feats)
        out["video_vector"] = self.frame_pool(out["frame_tokens"]).unsqueeze(1)  # (B, 1, H)
        return out

    def no_weight_decay(self) -> set[str]:
        """Their optimiser leaves every module named "LayerNorm" undecayed: the input projections'
        and positions' norms and, in v1, the norm of every attention layer (BertSelfOutput)."""
        names = input_layernorm_names(self)
        for prefix, module in self.named_modules():
            if isinstance(module, ResidualAttention):
                names.update(f"{prefix}.norm.{p}" for p, _ in module.norm.named_parameters())
        return names
