"""MS-SL (Dong et al., ACM MM 2022), the first PRVR baseline, in the CLIP-feature setting
(`model.name: ms_sl`; released code: HuiGuanLab/ms-sl, method/model.py).

Inputs, after `model.input_norm` (their loader: every token over its L2 norm + 1e-5):
- Query: input projection (LayerNorm, dropout, linear, ReLU) -> learned positions (LayerNorm,
  dropout) -> one BertAttention layer (prvr.models.residual_attention) with key padding mask -> attention pooling with a bias-free
  scorer -> (Q, H).
- Clip scale: the clip pooler's Nc tokens (uniform mean-pooled segments, as their loader pools the
  frames into map_size = 32 clips) -> projection, positions, one BertAttention layer (prvr.models.residual_attention) -> clip tokens
  (B, Nc, H) -> multi-scale sliding windows: the mean of every run of k consecutive clip tokens for
  k = 1..Nc at stride 1, P = Nc (Nc + 1) / 2 proposals, ordered by window size, then start (their
  Identity + AvgPool1d(k, stride=1) concatenation).
- Frame scale: the Nf frame tokens -> projection, positions, one BertAttention layer (prvr.models.residual_attention) -> (B, Nf, H).
- Key-clip guided attention, for every (video b, proposal p):
      G[b, p] = sum_f softmax_f(<c_{b,p}, W_k x_{b,f}>) W_v x_{b,f}      (no scaling, no bias)
  with c the proposals and x the encoded frames. Their code evaluates it only at each query's key
  clip (the proposal of highest cosine); it depends on (video, proposal) alone, so it is computed
  here for every proposal and the score / loss pick the key clip's row.

Score (`score_branches`; their inference, `key_clip_guided_attention_in_inference`):
    s(q, v) = w_clip * max_p cos(q, C[v, p]) + w_frame * cos(q, G[v, p*]),  p* = argmax_p cos(q, C[v, p])

Output keys: query (Q, H); frame_tokens (B, Nf, H); clip_tokens (B, Nc, H) (encoded clips, before
the windows); frame_to_clip (B, Nf); proposals (B, P, H); guided_frames (B, P, H); plus the other
keys of prvr.models.base.TwoBranchModel.encode_videos.

    model = create_model(ModelConfig(name="ms_sl", input_dim=768, hidden=384, frame_tokens=128,
                                     clip_tokens=32))
    out = model(frame_feats, query_feats, query_mask)   # out["proposals"]: (B, 528, 384)

At the TVR shape (768 -> 384, 128 frame tokens, 32 clip tokens, max_query_len 77) the model has
3,092,352 parameters (their MS_SL_Net with max_desc_l = 77: the same count; with their max_desc_l
30: 18,048 fewer, the query position table's 47 extra rows).
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ModelConfig, query_dim
from prvr.models.attention import AttentionPooling, init_weights
from prvr.models.base import ScoreBranch, TwoBranchModel
from prvr.models.common import ClipPooler, InputProjection, PositionalEmbedding
from prvr.models.residual_attention import ResidualAttention, bert_attention

MS_SL_BRANCHES = (ScoreBranch("clip", "query", "proposals"),
                  ScoreBranch("frame", "query", "proposals", guide_key="guided_frames"))


def sliding_windows(n_clips: int) -> torch.Tensor:
    """(P, Nc) 0/1 membership of clips in the multi-scale sliding windows, P = Nc (Nc + 1) / 2.

    Row order as theirs: window size k = 1..Nc, then start s = 0..Nc-k; the row of (k, s) is 1 on
    clips s..s+k-1. (0/1 rather than 1/k, so the proposals, a sum over k then / k as AvgPool1d,
    are exact in any dtype.)
    """
    if n_clips < 1:
        raise ValueError(f"sliding windows need >= 1 clip, got {n_clips}")
    rows = []
    for size in range(1, n_clips + 1):
        for start in range(n_clips - size + 1):
            row = torch.zeros(n_clips)
            row[start:start + size] = 1.0
            rows.append(row)
    return torch.stack(rows)  # (P, Nc)


class MsSlEncoder(nn.Module):
    """Projection, learned positions (a table of `max_tokens` rows) and one BertAttention layer (prvr.models.residual_attention)."""

    def __init__(self, cfg: ModelConfig, max_tokens: int, input_dim: int | None = None):
        super().__init__()
        self.project = InputProjection(input_dim or cfg.input_dim, cfg.hidden, cfg.input_dropout)
        self.position = PositionalEmbedding(max_tokens, cfg.hidden, cfg.input_dropout)
        self.layer = bert_attention(cfg.hidden, cfg.heads, cfg.dropout)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.layer(self.position(self.project(feats)), key_padding_mask=mask)  # (B, N, H)


class MsSlQueryEncoder(nn.Module):
    """(Q, L, D) caption tokens + (Q, L) bool mask -> (Q, H): encoder, then attention pooling
    without bias (their modular_vector_mapping) over the valid tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = MsSlEncoder(cfg, cfg.max_query_len, query_dim(cfg))
        self.pool = AttentionPooling(cfg.hidden, bias=False)

    def forward(self, query_feats: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.encoder(query_feats, query_mask), query_mask)  # (Q, H)


class KeyClipGuidedAttention(nn.Module):
    """Each proposal attends over its video's frames: softmax over frames of <proposal, W_k frame>,
    weighting W_v frame (their mapping_linear[0] / [1], bias-free; no 1/sqrt(H) scaling)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)

    def forward(self, frame_tokens: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """frame_tokens (B, Nf, H), proposals (B, P, H) -> guided frame features (B, P, H)."""
        logits = torch.einsum("bph,bfh->bpf", proposals, self.key(frame_tokens))  # (B, P, Nf)
        return torch.einsum("bpf,bfh->bph", logits.softmax(dim=-1), self.value(frame_tokens))


class MsSl(TwoBranchModel):
    """MS-SL; see the module docstring. Videos may have 1..frame_tokens frame tokens (their loader
    keeps shorter videos at their length)."""

    min_frame_tokens = 1
    score_branches = MS_SL_BRANCHES

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__(cfg, clip_pooler)
        self.query_encoder = MsSlQueryEncoder(cfg)
        # both position tables have frame_tokens rows, as their max_ctx_l (the clip one uses Nc)
        self.clip_encoder = MsSlEncoder(cfg, cfg.frame_tokens)
        self.frame_encoder = MsSlEncoder(cfg, cfg.frame_tokens)
        self.guided_attention = KeyClipGuidedAttention(cfg.hidden)
        # (P, Nc) windows, derived from cfg: not in the state dict
        self.register_buffer("windows", sliding_windows(cfg.clip_tokens), persistent=False)
        self.apply(init_weights)

    def encode_branches(self, frame_inputs: torch.Tensor, clip_inputs: torch.Tensor,
                        clip_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip_tokens = self.clip_encoder(clip_inputs)  # (B, Nc, H); first, as theirs
        return self.frame_encoder(frame_inputs), clip_tokens  # (B, Nf, H)

    def proposals(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        """(B, Nc, H) encoded clips -> (B, P, H) sliding-window means."""
        windows = self.windows.to(clip_tokens.dtype)  # (P, Nc)
        sums = torch.einsum("pc,bch->bph", windows, clip_tokens)  # (B, P, H)
        return sums / windows.sum(dim=1)[:, None]  # their AvgPool1d: sum over the window / k

    def encode_videos(self, frame_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """The base outputs plus proposals (B, P, H) and guided_frames (B, P, H)."""
        out = super().encode_videos(frame_feats)
        proposals = self.proposals(out["clip_tokens"])
        guided = self.guided_attention(out["frame_tokens"], proposals)
        return {**out, "proposals": proposals, "guided_frames": guided}

    def no_weight_decay(self) -> set[str]:
        """Their optimiser exempts every module named LayerNorm: the input ones and, in MS-SL, also
        each attention layer's post-norm (BertSelfOutput.LayerNorm)."""
        names = super().no_weight_decay()
        for prefix, module in self.named_modules():
            if isinstance(module, ResidualAttention):
                names.update(f"{prefix}.norm.{p}" for p, _ in module.norm.named_parameters())
        return names
