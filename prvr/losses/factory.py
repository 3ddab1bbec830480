"""Loss factory: `create_loss(cfg)` returns one callable that sums nothing and returns named terms.

The parts: the retrieval loss (always), TCPL when `cfg.tcpl.enabled` (terms "tcpl_dist" and
"tcpl_angle", or "tcpl_kl"), CBVA when `cfg.cbva.enabled` (term "cbva", adaptive inside it).

A `CompositeLoss` calls each of its named parts with the same keyword arguments (the model's output
dict plus `query_to_video`, `epoch`, `generator`, ...) and merges the term dicts; each part takes
what it needs by keyword and ignores the rest (`**unused`). Later parts (TCPL, CBVA) are appended:

    loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden)
    loss_fn.add(TcplLoss(...))                      # its terms join the dict
    terms = loss_fn(**outputs, query_to_video=q2v, epoch=e, generator=g)
    total = sum(terms.values())
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import ConfigError
from prvr.config_losses import LossConfig
from prvr.losses.cbva import CbvaLoss, check_cbva_config
from prvr.losses.distill import DistillLoss
from prvr.losses.ms_sl import build_ms_sl_loss
from prvr.losses.query_diverse import QueryDiverseLoss
from prvr.losses.retrieval import RetrievalLoss
from prvr.losses.tcpl import TcplLoss, check_tcpl_config
from prvr.models.base import MAX_CLIP_AND_FRAME


class CompositeLoss(nn.Module):
    """Several loss modules whose named terms are merged into one dict (names must not clash)."""

    def __init__(self, parts: list[nn.Module] | None = None):
        super().__init__()
        self.parts = nn.ModuleList(parts or [])

    def add(self, part: nn.Module) -> "CompositeLoss":
        self.parts.append(part)
        return self

    def forward(self, **inputs) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for part in self.parts:
            for name, value in part(**inputs).items():
                if name in terms:
                    raise ValueError(f"loss term {name!r} is produced by two loss parts")
                terms[name] = value
        return terms


# Models whose retrieval loss is not RetrievalLoss over their score branches (e.g. MS-SL's key-clip
# guided frame branch): model name -> builder(loss config, score branches) of that loss. Baselines
# register here, next to their model in prvr.models.MODEL_BUILDERS.
RETRIEVAL_LOSSES: dict = {
    "ms_sl": build_ms_sl_loss,  # MS-SL: key-clip guided frame scale (prvr.losses.ms_sl)
}


def create_loss(cfg: LossConfig, hidden: int | None = None, model_name: str = "gmmformer_v2",
                branches=MAX_CLIP_AND_FRAME) -> CompositeLoss:
    """The model's retrieval loss on its two branches, plus TCPL, CBVA, query diversity and
    distillation when enabled.

    model_name / branches: the model's config name and `score_branches` (which outputs the retrieval
    loss reads); RETRIEVAL_LOSSES gives a model its own retrieval loss.
    hidden: the model's token size, needed by CBVA's projection head (loss.cbva.head "linear").
    The loss may own parameters (that head): optimise `loss.parameters()` with the model's.

    Every TCPL/CBVA setting is checked even when the part is off, so a typo in an ablation file
    fails at once rather than in the run that turns the part on.
    """
    check_tcpl_config(cfg.tcpl)
    check_cbva_config(cfg.cbva)
    if cfg.cbva.adaptive.enabled and not cfg.cbva.enabled:
        raise ConfigError("loss.cbva.adaptive.enabled: adaptive CBVA needs loss.cbva.enabled")
    retrieval = RETRIEVAL_LOSSES.get(model_name, RetrievalLoss)
    loss = CompositeLoss([retrieval(cfg, branches)])
    if cfg.tcpl.enabled:
        loss.add(TcplLoss(cfg.tcpl))
    if cfg.cbva.enabled:
        loss.add(CbvaLoss(cfg.cbva, pairing=cfg.cbva.adaptive.pairing,
                          cross_video_negatives=cfg.cbva.cross_video_negatives, hidden=hidden))
    if cfg.query_diverse.enabled:
        loss.add(QueryDiverseLoss(cfg.query_diverse))
    if cfg.distill.enabled:
        loss.add(DistillLoss(cfg.distill))
    return loss
