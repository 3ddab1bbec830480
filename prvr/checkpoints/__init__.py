"""`prvr import-checkpoint`: a checkpoint saved by a release's own code -> prvr's model.pt.

    from prvr.checkpoints import import_checkpoint
    summary = import_checkpoint("ms_sl", "checkpoint_tvr/model.ckpt", "model.pt", base_config="config/config.yaml")

Formats (FORMATS): "msc" and "gmmformer_v2" (best.ckpt of their save_ckpt; prvr model gmmformer_v2),
"gmmformer_v1" (best.ckpt; gmmformer_v1), "ms_sl" (model.ckpt; ms_sl), "dl_dkd" (model.ckpt of the
ICCV branch; dl_dkd). Their file is read without their code (prvr.checkpoints.common), the model
settings come from their saved config and weight shapes (the rest from `base_config`, else their
code's defaults), every tensor of theirs is mapped onto exactly one of prvr's with its shape checked,
and the model.pt gets "config", "model", "seed" and "imported_from" (format, file, sha256, epoch,
model_val, tensor counts, the tensors not used at evaluation and why). Any tensor left over or
missing, a wrong shape or an unreadable file is a one-line PrvrError naming the file and the tensor.
"""
from __future__ import annotations

from pathlib import Path

from prvr.checkpoints import dl_dkd, gmmformer_v1, ms_sl, msc
from prvr.checkpoints.common import (CheckpointImportError, ReleaseFormat, assemble, build_config,
                                     load_release_file, sha256_file, write_model_file)
from prvr.config import Config, load_config
from prvr.models import create_model

FORMATS: dict[str, ReleaseFormat] = {
    "msc": ReleaseFormat("msc", "gmmformer_v2", msc.read_best_ckpt, msc.msc_settings, msc.plan),
    "gmmformer_v2": ReleaseFormat("gmmformer_v2", "gmmformer_v2", msc.read_best_ckpt, msc.gmmformer_v2_settings,
                                  msc.plan),
    "gmmformer_v1": ReleaseFormat("gmmformer_v1", "gmmformer_v1", msc.read_best_ckpt, gmmformer_v1.settings,
                                  gmmformer_v1.plan),
    "ms_sl": ReleaseFormat("ms_sl", "ms_sl", ms_sl.read_model_ckpt, ms_sl.settings, ms_sl.plan, ms_sl.DEFAULTS),
    "dl_dkd": ReleaseFormat("dl_dkd", "dl_dkd", ms_sl.read_model_ckpt, dl_dkd.settings, dl_dkd.plan, dl_dkd.DEFAULTS),
}


def _base(base_config) -> Config | None:
    if base_config is None or isinstance(base_config, Config):
        return base_config
    return load_config(base_config)


def _build_model(cfg: Config, source: Path):
    try:
        return create_model(cfg.model)
    except ValueError as err:
        raise CheckpointImportError(f"{source}: its settings cannot build prvr's {cfg.model.name} ({err})") from None


def import_checkpoint(fmt: str, path, out, base_config=None) -> dict:
    """Map the release checkpoint `path` (format `fmt`) onto prvr's model and write model.pt at `out`.
    base_config: a Config or a YAML path for what their file does not say. Returns a summary dict."""
    if fmt not in FORMATS:
        raise CheckpointImportError(f"unknown checkpoint format {fmt!r} (known: {', '.join(FORMATS)})")
    release_format, path, out = FORMATS[fmt], Path(path), Path(out)
    release = release_format.read(load_release_file(path), path)
    overrides, not_used = release_format.settings(release, path)
    overrides["model"]["name"] = release_format.model
    cfg = build_config(_base(base_config), release_format.defaults, overrides, path)
    model = _build_model(cfg, path)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    state = assemble(release.state, release_format.plan(cfg.model), expected, not_used, path)
    model.load_state_dict(state)  # strict: the plan covered every parameter
    imported_from = {"format": fmt, "file": str(path), "sha256": sha256_file(path), "epoch": release.epoch,
                     "model_val": release.model_val, "tensors": len(release.state), "prvr_tensors": len(state),
                     "not_used": dict(sorted(not_used.items()))}
    write_model_file(out, cfg, state, release.seed, imported_from)
    return {"out": str(out), "model": cfg.model.name, **imported_from}


__all__ = ["FORMATS", "CheckpointImportError", "import_checkpoint"]
