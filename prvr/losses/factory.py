"""Loss factory: `create_loss(cfg)` returns one callable that sums nothing and returns named terms.

A `CompositeLoss` calls each of its named parts with the same keyword arguments (the model's output
dict plus `query_to_video`, `epoch`, `generator`, ...) and merges the term dicts; each part takes
what it needs by keyword and ignores the rest (`**unused`). Later parts (TCPL, CBVA) are appended:

    loss_fn = create_loss(cfg.loss)
    loss_fn.add(TcplLoss(...))                      # its terms join the dict
    terms = loss_fn(**outputs, query_to_video=q2v, epoch=e, generator=g)
    total = sum(terms.values())
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.config import LossConfig
from prvr.losses.retrieval import RetrievalLoss


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


def create_loss(cfg: LossConfig) -> CompositeLoss:
    """The baseline objective: the retrieval loss on both branches."""
    return CompositeLoss([RetrievalLoss(cfg)])
