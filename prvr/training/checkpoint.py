"""Checkpoints that make an interrupted training run resume exactly where it stopped.

`last.pt` is written (atomically) after every epoch with the model, optimizer, scheduler, RNG states,
the history and the early-stopping state; `best.pt` holds the weights of the best validation epoch.
A checkpoint from a different resolved config or seed is refused rather than silently mixed in.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from prvr.errors import PrvrError
from prvr.io import atomic_path


class CheckpointError(PrvrError, RuntimeError):
    """A checkpoint cannot be used (unreadable, or made with another config or seed)."""


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # a file handle: the archive's inner name must not carry the temp name


def load_checkpoint(path: str | Path, config_sha256: str, seed: int) -> dict:
    """Load a resume checkpoint and check it belongs to this config and seed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}); delete it to restart") from None
    if state.get("config_sha256") != config_sha256 or state.get("seed") != seed:
        raise CheckpointError(f"{path}: checkpoint was made with another config or seed; delete it to restart")
    return state
