"""Checkpoints that make an interrupted training run resume exactly where it stopped.

`last.pt` is written (atomically) after every epoch with the model, optimizer, scheduler, RNG states,
the history and the early-stopping state; `best.pt` holds the weights of the best validation epoch.
A run resumes only from a checkpoint made by the same run: the same resolved config, seed, input
files (sha256 of each) and code (hash of the prvr sources). Any other checkpoint, or an unreadable
one, is set aside (renamed, with the reason in a file beside it) and training starts over, so a
stale checkpoint can never be continued under new inputs.
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


def load_checkpoint(path: str | Path, identity: dict) -> dict:
    """Load a resume checkpoint; CheckpointError names why it is not this run's (unreadable, or
    which part of the run identity differs: a training setting (named), the seed, an input's hash, code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__})") from None
    saved = state.get("identity", {}) if isinstance(state, dict) else {}
    for key, value in identity.items():
        if key == "inputs" and isinstance(value, dict):
            for name, digest in value.items():
                if saved.get("inputs", {}).get(name) != digest:
                    raise CheckpointError(f"{path}: made from another {name} (sha256 differs)")
        elif key == "training_settings" and saved.get(key) != value:
            changed = ", ".join(_changed_keys(saved.get(key) or {}, value)[:3])
            raise CheckpointError(f"{path}: made with other training settings ({changed})")
        elif saved.get(key) != value:
            raise CheckpointError(f"{path}: made with another {key}")
    return state


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def set_aside(ckpt_dir: Path, reason: str) -> Path:
    """Rename a checkpoint folder that must not be resumed to checkpoints.stale-<n>, with the reason
    in STALE.txt inside; returns the new path."""
    n = 1
    while (dest := ckpt_dir.with_name(f"{ckpt_dir.name}.stale-{n}")).exists():
        n += 1
    ckpt_dir.rename(dest)
    (dest / "STALE.txt").write_text(reason + "\n")
    return dest


def stale_folders(root: Path) -> list[tuple[Path, int]]:
    """(folder, bytes) of every set-aside checkpoint folder (checkpoints.stale-<n>, with its STALE.txt)
    under `root`. They are kept until removed: hundreds of MB each at the TVR size."""
    found = []
    for folder in sorted(Path(root).rglob("checkpoints.stale-*")):
        if folder.is_dir() and (folder / "STALE.txt").is_file():
            found.append((folder, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())))
    return found
