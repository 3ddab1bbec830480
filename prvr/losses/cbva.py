"""Cross-Branch Video Alignment (CBVA): align the fine (frame) and coarse (segment) branches of each
video so that different events of one video stay apart.

Inputs from the model's output dict: frame tokens f (B, Nf, H); segment tokens c (B, S, H)
(`segment_tokens`, default `clip_tokens`); frame_to_segment p (B, Nf) long (default
`frame_to_clip`), the segment holding each frame; segment_mask (B, S) bool, False at padding
(default all True). Padded segments are neither anchors nor negatives. lme = log-mean-exp.

form "within_video" (authors' code): per video only, raw dot products, no temperature.
  frame -> segment, anchor frame f, positive p(f), negatives the video's other valid segments j,
  segment side detached:  l_fj = <f, sg(c_j)>
      L_f = log(e^{l_f p(f)} + mean_j w_j e^{l_fj}) - l_f p(f)
  segment -> frame, anchor segment s (valid, holding >= 1 frame), positives its frames, negatives the
  video's other frames, frame side detached:  l'_fs = <sg(f), c_s>
      L_s = log(mean_{f in s} e^{l'_fs} + mean_{f not in s} w_f e^{l'_fs}) - lme_{f in s} l'_fs
  loss = mean over videos of (mean_f L_f + mean_s L_s). Weights w = 1 (the code); the adaptive
  "weights" form sets w_j = w_{p(f) j} and w_f = w_{s p(f)} (prvr.losses.adaptive). An anchor with
  no negatives adds 0.
form "infonce" (seed summary): fine segment i = mean of the frame tokens it holds, coarse segment
  j = c_j, cosine similarity at temperature tau, both sides trained:
      L_i = log sum_j w_ij e^{cos(fine_i, c_j) / tau} - cos(fine_i, c_i) / tau      (w_ii = 1)
  positives: the same segment index; negatives: the other valid segments of the same video, and
  with `cross_video_negatives` also every valid segment of the other videos of the batch.
  loss = mean over videos of mean_i L_i (anchors: valid segments holding >= 1 frame; candidates:
  all valid segments).
Term returned: {"cbva": weight * loss}.

Head (`cfg.head`): "linear" (authors' code, `vproj_clip`) maps f and c through one shared
trainable linear layer H -> H before either form (and before adaptive merging); "none" uses the
retrieval tokens as they are. The head belongs to the loss module, so the trainer optimises and
checkpoints it with the model, and evaluation never sees it.

Adaptive CBVA (`cfg.adaptive`, prvr.losses.adaptive): "segments" merges the segment tokens further
to a per-video count before the loss (graph and merge decisions from `merged_inputs`, the clip
branch's input features, when given; else from the segment tokens); "weights" sets the w above.

    loss = CbvaLoss(CbvaConfig(form="within_video"), hidden=384)
    terms = loss(**model_outputs)    # frame_tokens, clip_tokens, frame_to_clip, [segment_*]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config import ConfigError
from prvr.config_losses import CbvaConfig
from prvr.losses import adaptive

FORMS = ("within_video", "infonce")
HEADS = ("linear", "none")
NEG = -1e30  # stands for log(0) in masked log-sum-exp: finite, so no NaN gradients


def masked_logmeanexp(logits: torch.Tensor, mask: torch.Tensor, dim: int,
                      log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """log(sum_{mask} w e^logits / #mask) along dim; about NEG where the mask is empty."""
    values = logits if log_weights is None else logits + log_weights
    count = mask.sum(dim=dim).clamp(min=1).to(logits.dtype)
    return torch.logsumexp(values.masked_fill(~mask, NEG), dim=dim) - count.log()


def _log_weights(weights: torch.Tensor) -> torch.Tensor:
    return weights.clamp(min=1e-30).log()


def check_segments(frame_tokens, segment_tokens, frame_to_segment, segment_mask) -> None:
    """One-line ValueError for inconsistent CBVA inputs (shapes, label range, padded labels)."""
    b, n_frames, _ = frame_tokens.shape
    s = segment_tokens.shape[1]
    if segment_tokens.shape[0] != b or frame_to_segment.shape != (b, n_frames):
        raise ValueError(f"CBVA: frame tokens {tuple(frame_tokens.shape)}, segment tokens "
                         f"{tuple(segment_tokens.shape)}, frame_to_segment "
                         f"{tuple(frame_to_segment.shape)} do not agree")
    if segment_mask.shape != (b, s) or segment_mask.dtype != torch.bool:
        raise ValueError(f"CBVA: segment_mask must be bool ({b}, {s}), got "
                         f"{segment_mask.dtype} {tuple(segment_mask.shape)}")
    if frame_to_segment.min() < 0 or frame_to_segment.max() >= s:
        raise ValueError(f"CBVA: frame_to_segment has labels outside 0..{s - 1}")
    if not bool(segment_mask.gather(1, frame_to_segment).all()):
        raise ValueError("CBVA: a frame is assigned to a padded segment (segment_mask False)")


def frame_to_segment_loss(frame_tokens, segment_tokens, frame_to_segment, segment_mask,
                          log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per video mean_f L_f (module docstring), no detaching here: -> (B,).

    log_weights (B, S, S) or None: log w between a frame's positive segment (row) and a negative.
    """
    s = segment_tokens.shape[1]
    labels = frame_to_segment[:, :, None]  # (B, Nf, 1)
    own = labels == torch.arange(s, device=labels.device)  # (B, Nf, S)
    logits = frame_tokens @ segment_tokens.transpose(1, 2)  # (B, Nf, S)
    positive = logits.gather(2, labels).squeeze(2)  # (B, Nf)
    row_w = None if log_weights is None else log_weights.gather(1, labels.expand(-1, -1, s))
    negative = masked_logmeanexp(logits, segment_mask[:, None, :] & ~own, 2, row_w)
    return (torch.logaddexp(positive, negative) - positive).mean(dim=1)


def segment_to_frame_loss(frame_tokens, segment_tokens, frame_to_segment, segment_mask,
                          log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per video mean_s L_s over valid segments holding frames (module docstring): -> (B,)."""
    s = segment_tokens.shape[1]
    own = frame_to_segment[:, None, :] == torch.arange(s, device=frame_to_segment.device)[:, None]
    logits = segment_tokens @ frame_tokens.transpose(1, 2)  # (B, S, Nf)
    col_w = None if log_weights is None else log_weights.gather(
        2, frame_to_segment[:, None, :].expand(-1, s, -1))  # w[s, p(f)]
    positive = masked_logmeanexp(logits, own, 2)  # (B, S)
    negative = masked_logmeanexp(logits, ~own, 2, col_w)
    anchors = segment_mask & own.any(dim=2)  # (B, S)
    per_segment = (torch.logaddexp(positive, negative) - positive) * anchors
    return per_segment.sum(dim=1) / anchors.sum(dim=1).clamp(min=1)


def within_video_cbva(frame_tokens: torch.Tensor, segment_tokens: torch.Tensor,
                      frame_to_segment: torch.Tensor, segment_mask: torch.Tensor,
                      weighted: bool = False) -> torch.Tensor:
    """The "within_video" form (module docstring): (B, Nf, H), (B, S, H), (B, Nf), (B, S) -> scalar.

    Each direction trains one side only (the other is detached), as in the authors' code.
    """
    log_w = _log_weights(adaptive.segment_pair_weights(segment_tokens)) if weighted else None
    frames = frame_to_segment_loss(frame_tokens, segment_tokens.detach(), frame_to_segment,
                                   segment_mask, log_w)
    segments = segment_to_frame_loss(frame_tokens.detach(), segment_tokens, frame_to_segment,
                                     segment_mask, log_w)
    return (frames + segments).mean()


def pool_frames(frame_tokens: torch.Tensor, frame_to_segment: torch.Tensor, n_segments: int):
    """Mean of each segment's frame tokens: -> (B, S, H) and frame counts (B, S) (0: empty segment)."""
    member = F.one_hot(frame_to_segment, n_segments).to(frame_tokens.dtype)  # (B, Nf, S)
    counts = member.sum(dim=1)  # (B, S)
    pooled = member.transpose(1, 2) @ frame_tokens  # (B, S, H)
    return pooled / counts.clamp(min=1)[:, :, None], counts


def infonce_cbva(frame_tokens: torch.Tensor, segment_tokens: torch.Tensor,
                 frame_to_segment: torch.Tensor, segment_mask: torch.Tensor, temperature: float,
                 weighted: bool = False, cross_video_negatives: bool = False) -> torch.Tensor:
    """The "infonce" form (module docstring): (B, Nf, H), (B, S, H), (B, Nf), (B, S) -> scalar."""
    b, s, _ = segment_tokens.shape
    fine, counts = pool_frames(frame_tokens, frame_to_segment, s)
    anchors = segment_mask & (counts > 0)  # (B, S): the fine side needs frames
    fine, coarse = F.normalize(fine, dim=-1), F.normalize(segment_tokens, dim=-1)
    if cross_video_negatives:  # one (B*S, B*S) contrast; rows = anchors, columns = candidates
        fine, coarse = fine.reshape(1, b * s, -1), coarse.reshape(1, b * s, -1)
        candidates = segment_mask.reshape(1, 1, b * s)
    else:  # per video (B, S, S)
        candidates = segment_mask[:, None, :]
    logits = fine @ coarse.transpose(1, 2) / temperature  # (G, R, R)
    eye = torch.eye(logits.shape[-1], dtype=torch.bool, device=logits.device)
    log_w = None
    if weighted:
        log_w = _log_weights(adaptive.segment_pair_weights(coarse)).masked_fill(eye, 0.0)
    allowed = candidates.expand_as(logits)
    denominator = torch.logsumexp((logits if log_w is None else logits + log_w)
                                  .masked_fill(~allowed, NEG), dim=-1)
    per_anchor = (denominator - logits.diagonal(dim1=1, dim2=2)).reshape(b, s) * anchors
    per_video = per_anchor.sum(dim=1) / anchors.sum(dim=1).clamp(min=1)
    has_anchor = anchors.any(dim=1)
    return per_video[has_anchor].mean() if bool(has_anchor.any()) else per_video.sum() * 0


def check_cbva_config(cfg: CbvaConfig) -> None:
    """One-line ConfigError naming the key of a CBVA setting that cannot work."""
    if cfg.form not in FORMS:
        raise ConfigError(f"loss.cbva.form: expected one of {FORMS}, got {cfg.form!r}")
    if cfg.head not in HEADS:
        raise ConfigError(f"loss.cbva.head: expected one of {HEADS}, got {cfg.head!r}")
    if cfg.temperature <= 0:
        raise ConfigError(f"loss.cbva.temperature: must be > 0, got {cfg.temperature}")
    ada = cfg.adaptive
    if ada.form not in adaptive.FORMS:
        raise ConfigError(f"loss.cbva.adaptive.form: expected one of {adaptive.FORMS}, got {ada.form!r}")
    try:
        adaptive.check_choices(ada.segment_choices)
    except ValueError as err:
        raise ConfigError(f"loss.cbva.adaptive.segment_choices: {err}") from None
    if not -1.0 <= ada.threshold <= 1.0:
        raise ConfigError(f"loss.cbva.adaptive.threshold: a cosine in [-1, 1], got {ada.threshold}")


def make_head(kind: str, hidden: int | None) -> nn.Linear | None:
    """CBVA's projection head: "linear" = one trainable H -> H layer shared by both branches
    (authors' `vproj_clip`, N(0, 0.02) weights and zero bias like the rest of their model);
    "none" = no head. The head is part of the objective: retrieval scores never pass through it."""
    if kind == "none":
        return None
    if hidden is None or hidden < 1:
        raise ConfigError(f"loss.cbva.head={kind!r} needs the model's hidden size (got {hidden})")
    head = nn.Linear(hidden, hidden)
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head


class CbvaLoss(nn.Module):
    """CBVA in the configured form, with adaptive CBVA when `cfg.adaptive.enabled`.

    pairing: how the "segments" form merges tokens ("bipartite" = the authors' CBVA code, "adjacent"
    = order-preserving); cross_video_negatives: the "infonce" form's negatives (docstring above).
    After a call with adaptive segments, `last_segment_counts` holds the (B,) counts used.
    """

    def __init__(self, cfg: CbvaConfig, pairing: str = "bipartite",
                 cross_video_negatives: bool = False, hidden: int | None = None):
        super().__init__()
        check_cbva_config(cfg)
        self.cfg = cfg
        self.pairing = pairing
        self.cross_video_negatives = cross_video_negatives
        self.last_segment_counts: torch.Tensor | None = None
        self.head = make_head(cfg.head, hidden)

    def forward(self, *, frame_tokens: torch.Tensor, clip_tokens: torch.Tensor | None = None,
                frame_to_clip: torch.Tensor | None = None, segment_tokens=None,
                frame_to_segment=None, segment_mask=None, clip_sizes=None, segment_sizes=None,
                merged_inputs=None, **unused) -> dict[str, torch.Tensor]:
        """Model outputs by keyword (see the module docstring); returns {"cbva": weighted loss}."""
        tokens = clip_tokens if segment_tokens is None else segment_tokens
        labels = frame_to_clip if frame_to_segment is None else frame_to_segment
        if tokens is None or labels is None:
            raise ValueError("CBVA needs segment_tokens/frame_to_segment (or clip_tokens/frame_to_clip)")
        mask = segment_mask if segment_mask is not None else torch.ones(
            tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        check_segments(frame_tokens, tokens, labels, mask)
        if self.head is not None:  # the authors' shared vproj_clip: CBVA acts on a projection
            frame_tokens, tokens = self.head(frame_tokens), self.head(tokens)
        ada = self.cfg.adaptive
        if ada.enabled and ada.form == "segments":
            tokens, labels, mask = self._adapt(tokens, labels, mask, segment_sizes, clip_sizes,
                                               merged_inputs)
        weighted = ada.enabled and ada.form == "weights"
        if self.cfg.form == "within_video":
            loss = within_video_cbva(frame_tokens, tokens, labels, mask, weighted)
        else:
            loss = infonce_cbva(frame_tokens, tokens, labels, mask, self.cfg.temperature, weighted,
                                self.cross_video_negatives)
        return {"cbva": self.cfg.weight * loss}

    def _adapt(self, tokens, labels, mask, segment_sizes, clip_sizes, merged_inputs):
        """Adaptive "segments": merge each video's tokens to its connectivity-chosen count."""
        if not bool(mask.all()):
            raise ValueError("adaptive CBVA segments: the coarse branch must have no padded tokens")
        sizes = segment_sizes if segment_sizes is not None else clip_sizes
        if sizes is None or sizes.shape != tokens.shape[:2]:
            sizes = F.one_hot(labels, tokens.shape[1]).sum(dim=1).clamp(min=1).to(tokens.dtype)
        graph = tokens if merged_inputs is None else merged_inputs
        if graph.shape[:2] != tokens.shape[:2]:
            raise ValueError(f"merged_inputs {tuple(graph.shape)} do not match the coarse tokens "
                             f"{tuple(tokens.shape)}")
        segments, counts = adaptive.adaptive_segments(tokens, sizes, labels, graph,
                                                      self.cfg.adaptive.segment_choices,
                                                      self.cfg.adaptive.threshold, self.pairing)
        self.last_segment_counts = counts
        return segments.tokens, segments.frame_to_segment, segments.mask
