"""Model factory (open_clip style): `create_model(cfg)` builds the model named by `cfg.name`.

    from prvr.models import create_model
    model = create_model(cfg.model, seed=9527)   # same seed -> same initial weights

`cfg.merging.enabled` makes the clip branch use order-preserving token merging
(prvr.models.token_merging) instead of uniform pooling; the weights are the same either way.

New model variants register a builder: `MODEL_BUILDERS["my_model"] = lambda cfg: MyModel(cfg)`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from prvr.config import ModelConfig
from prvr.models.dl_dkd import DLDKD
from prvr.models.gmmformer_lite import GMMFormerV2Lite
from prvr.models.gmmformer_v1 import GMMFormerV1
from prvr.models.gmmformer_v2 import GMMFormerV2
from prvr.models.ms_sl import MsSl

MODEL_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "gmmformer_v2": GMMFormerV2,  # the released architecture (authors' reading)
    "gmmformer_v2_lite": GMMFormerV2Lite,  # this project's lighter encoder
    "gmmformer_v1": GMMFormerV1,  # baseline: GMMFormer v1 (prvr.models.gmmformer_v1)
    "ms_sl": MsSl,  # baseline: MS-SL (prvr.models.ms_sl)
    "dl_dkd": DLDKD,  # baseline: DL-DKD student, ICCV code (prvr.models.dl_dkd)
}


def create_model(cfg: ModelConfig, seed: int | None = None) -> nn.Module:
    """Build the model `cfg.name`; with `seed`, initialise under that seed without touching the
    global RNG state (so data order etc. do not depend on whether a model was built first)."""
    builder = MODEL_BUILDERS.get(cfg.name)
    if builder is None:
        raise ValueError(f"model.name: unknown model {cfg.name!r} "
                         f"(known: {', '.join(sorted(MODEL_BUILDERS))})")
    if seed is None:
        return builder(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(cfg)
