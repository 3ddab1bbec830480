"""What both PRVR models share (`TwoBranchModel`): input checks, `model.input_norm`, the clip pooler
and the output dict the losses and the evaluation read. A model sets `query_encoder` and implements
`encode_branches`; the keys are listed in prvr.models.gmmformer_lite's docstring.

`ScoreBranch` is how any model (the MSC models and the baselines) says which of its outputs make its
query-video score: `model.score_branches` holds two, weighted by eval.w_clip and eval.w_frame:

    s(q, v) = w_clip * s_0(q, v) + w_frame * s_1(q, v)
    s_i(q, v) = max_n cos(Q_i[q], T_i[v, n])                          (guide_key None)
              = cos(Q_i[q], G_i[v, n*]),  n* = argmax_n cos(Q_i[q], T_i[v, n])   (guide_key set)

with Q_i = outputs[query_key] (Q, H), T_i = outputs[video_key] (V, N, H), G_i = outputs[guide_key]
(V, N, H). The retrieval loss names its terms after `name` (nce_clip, trip_frame, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prvr.config import ModelConfig
from prvr.models.common import (ClipPooler, check_model_config, check_query_input,
                                check_video_input, input_layernorm_names, make_clip_pooler,
                                normalise_inputs)


@dataclass(frozen=True)
class ScoreBranch:
    """One term of a model's score; see the module docstring. name: the term's name in losses and
    logs; query_key / video_key / guide_key: output keys of encode_queries / encode_videos."""
    name: str
    query_key: str
    video_key: str
    guide_key: str | None = None


MAX_CLIP_AND_FRAME = (ScoreBranch("clip", "query", "clip_tokens"), ScoreBranch("frame", "query", "frame_tokens"))


class TwoBranchModel(nn.Module):
    """Base of the frame-branch / clip-branch PRVR models. `min_frame_tokens`: the fewest frame
    tokens a video may have (None: exactly model.frame_tokens). `score_branches`: what the score is
    made of (weighted by eval.w_clip, eval.w_frame)."""

    min_frame_tokens: int | None = None
    score_branches: tuple[ScoreBranch, ScoreBranch] = MAX_CLIP_AND_FRAME

    def __init__(self, cfg: ModelConfig, clip_pooler: ClipPooler | None = None):
        super().__init__()
        check_model_config(cfg)
        self.cfg = cfg
        self.clip_pooler = make_clip_pooler(cfg) if clip_pooler is None else clip_pooler

    def encode_branches(self, frame_inputs: torch.Tensor, clip_inputs: torch.Tensor,
                        clip_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (B, Nf, D) frames and (B, Nc, D) clip tokens with their (B, Nc) sizes ->
        encoded frame tokens (B, Nf, H) and clip tokens (B, Nc, H)."""
        raise NotImplementedError

    def encode_videos(self, frame_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, Nf, D) -> frame_tokens, clip_tokens, clip_sizes, frame_to_clip, merged_inputs,
        segment_tokens, frame_to_segment, segment_mask."""
        min_tokens = self.cfg.frame_tokens if self.min_frame_tokens is None else self.min_frame_tokens
        check_video_input(self.cfg, frame_feats, min_tokens)
        pooled = self.clip_pooler(frame_feats, self.cfg.clip_tokens)  # merges on raw features
        clip_inputs = normalise_inputs(self.cfg, pooled.features)  # (B, Nc, D)
        frame_tokens, clip_tokens = self.encode_branches(
            normalise_inputs(self.cfg, frame_feats), clip_inputs, pooled.sizes)
        return {"frame_tokens": frame_tokens, "clip_tokens": clip_tokens,
                "clip_sizes": pooled.sizes, "frame_to_clip": pooled.frame_to_token,
                "merged_inputs": clip_inputs, "segment_tokens": clip_tokens,
                "frame_to_segment": pooled.frame_to_token,
                "segment_mask": torch.ones(clip_tokens.shape[:2], dtype=torch.bool,
                                           device=clip_tokens.device)}

    def encode_queries(self, query_feats: torch.Tensor,
                       query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(Q, L, D) features and (Q, L) bool mask (True = valid) -> {"query": (Q, H)}."""
        check_query_input(self.cfg, query_feats, query_mask)
        return {"query": self.query_encoder(normalise_inputs(self.cfg, query_feats), query_mask)}

    def forward(self, frame_feats: torch.Tensor, query_feats: torch.Tensor,
                query_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch of videos and queries; the dict has the keys of both encoders."""
        return {**self.encode_queries(query_feats, query_mask), **self.encode_videos(frame_feats)}

    def no_weight_decay(self) -> set[str]:
        """Parameter names the authors' optimiser leaves undecayed besides biases: their modules
        named LayerNorm (the input projections' and positional embeddings' norms). Every other
        norm and the fusion token are decayed, as in their code."""
        return input_layernorm_names(self)
