"""Reading a trained model file (model.pt) back: one clear line naming the file for every way it
can be wrong, never a bare traceback.

    saved = read_model_file("results/demo/runs/baseline/seed1/model.pt")    # {"config", "model", "seed", ...}
    model, cfg = model_from_saved(saved, "…/model.pt", device="cpu")
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from prvr.config import from_dict
from prvr.errors import PrvrError
from prvr.models import create_model

MODEL_KEYS = ("config", "model", "seed")  # what train_run writes into model.pt


def read_model_file(path: str | Path) -> dict:
    """The dict of a model.pt, or a PrvrError saying what is wrong with the file."""
    path = Path(path)
    if not path.exists():
        raise PrvrError(f"{path}: model file not found")
    if path.is_dir():
        raise PrvrError(f"{path}: is a directory, expected a model.pt file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, UnicodeDecodeError, ValueError, AttributeError,
            ImportError, IndexError, KeyError, TypeError, OSError) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise PrvrError(f"{path}: not a readable model file (truncated, empty or not a torch file: {why})") from None
    if isinstance(saved, dict) and "config" not in saved and ("optimizer" in saved or "epoch" in saved):
        raise PrvrError(f"{path}: a training checkpoint (checkpoints/last.pt or best.pt), not a model file; "
                        "give the run's model.pt")
    missing = [key for key in MODEL_KEYS if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise PrvrError(f"{path}: not a prvr model file (missing {', '.join(missing)})")
    return saved


def _move(model: torch.nn.Module, device: str, source: str) -> torch.nn.Module:
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as err:  # torch says "not compiled with CUDA" / "no CUDA GPUs"
        raise PrvrError(f"{source}: cannot put the model on device {device!r} "
                        f"({str(err).splitlines()[0][:120]})") from None


def model_from_saved(saved: dict, source: str, device: str | None = None):
    """Model and config from a loaded model.pt dict; `source` names the file in every error."""
    cfg = from_dict(saved["config"], source)
    model = create_model(cfg.model)
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).splitlines()
        why = (first[1].strip() if len(first) > 1 else first[0] if first else type(err).__name__)[:160]
        raise PrvrError(f"{source}: its saved config does not match its weights ({why})") from None
    model = _move(model, device or cfg.train.device, source)
    model.eval()
    return model, cfg
