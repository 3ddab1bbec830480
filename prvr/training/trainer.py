"""Train a PRVR model: seeded, checkpointed every epoch, resumable, early-stopped on validation SumR.

    from prvr.training.trainer import train
    summary = train(cfg, seed=9527, data=TrainData(...), out_dir="results/demo/runs/baseline/seed9527")

Writes into out_dir: model.pt (best weights + resolved config), train_log.jsonl (one line per
epoch: each named loss term and the val metrics), checkpoints/last.pt and checkpoints/best.pt.
The same config and seed give the same weights on CPU, also across an interruption and resume.
Optimiser, schedule and decay groups: prvr.training.optim. Early stopping (the authors' rule):
training ends once more than train.early_stop epochs in a row fail to beat the best val SumR,
so early_stop=10 runs 11 failing epochs after the best one (`should_stop`).

train.precision: float32 (default), tf32 (cuda) or bfloat16 (the forward under autocast, the
losses in float32, float32 weights and optimiser state): prvr.training.precision.

train.activation_checkpointing: the model's encoder layers recompute their activations in the
backward pass (prvr.models.attention.enable_activation_checkpointing: the parallel layers of
gmmformer_v2, the video layers of gmmformer_v2_lite); the same loss and gradients (to float32
rounding; the dropout masks are replayed), a second forward of those layers, far less memory (TVR
shape, batch 128: peak RSS 12.2 -> 5.2 GB, bench/bench_scale.py). A model without such layers (the
baselines' own layer classes) stops with one ConfigError line instead of training without it.
"""
from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from prvr.config import Config, to_dict, training_settings
from prvr.config_checks import training_problems
from prvr.store.splits import check_disjoint_splits
from prvr.data.dataset import PRVRDataset, collate_videos
from prvr.data.teacher import TeacherFeatures
from prvr.store.feature_cache import FeatureCache, open_cache
from prvr.errors import AnnotationError, ConfigError
from prvr.evaluation.evaluate import evaluate_split, score_branches
from prvr.io import write_text
from prvr.losses import create_loss
from prvr.models import create_model
from prvr.models.attention import enable_activation_checkpointing
from prvr.provenance import sha256_file, source_hash
from prvr.training.checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint,
                                      set_aside, set_rng_state)
from prvr.training.model_file import model_from_saved, read_model_file
from prvr.training.optim import clips_inside, create_optimizer, create_scheduler
from prvr.training.precision import check_precision, forward_and_losses, step_precision


@dataclass
class TrainData:
    """Paths of one dataset's training inputs.

    feature_cache: optional, the resampled float16 cache (prvr.store.feature_cache, built from the
    train captions and these stores with the model's frame_tokens and max_query_len): the train split
    is then read from it (not copied into RAM) and it is checked against the other inputs first
    (StaleCacheError otherwise). It counts as an input of the run (run_identity hashes it).
    val_video_feats / val_text_feats / val_feature_cache: the selection split's own stores and cache
    (the workflow keeps each split's features apart); each defaults to the train split's, and one
    given equal to it is that default. An optional path left None is not an attribute, so vars(data),
    and the resume identity of runs without it, are what they were.
    """
    train_captions: Path
    val_captions: Path
    video_feats: Path
    text_feats: Path
    feature_cache: Path | None = None
    teacher_video: Path | None = None  # DL-DKD's own CLIP teacher (prvr.data.teacher), imported stores
    teacher_text: Path | None = None
    val_video_feats: Path | None = None
    val_text_feats: Path | None = None
    val_feature_cache: Path | None = None

    def __post_init__(self):
        for name in ("video_feats", "text_feats", "feature_cache"):
            if getattr(self, f"val_{name}") == getattr(self, name):
                setattr(self, f"val_{name}", None)  # the train split's: the default
        for optional in ("feature_cache", "teacher_video", "teacher_text", "val_video_feats", "val_text_feats",
                         "val_feature_cache"):
            if getattr(self, optional) is None:
                delattr(self, optional)  # reads as the class default None; not an input in vars(data)

    def val_stores(self) -> tuple[Path, Path, Path | None]:
        """(video store, text store, feature cache or None) of the selection split."""
        return (self.val_video_feats or self.video_feats, self.val_text_feats or self.text_feats,
                self.val_feature_cache or self.feature_cache)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True) without its import of torch._inductor
    (and with it torch._dynamo: 1.5-5 s of a demo training process of ~10 s), which only tells
    torch.compile, never used here; torch's own call where its internals differ."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None or "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


def should_stop(last_epoch: int, best_epoch: int, early_stop: int) -> bool:
    """After epoch `last_epoch`, stop when more than `early_stop` epochs in a row have failed to
    beat the best val SumR (the authors' `es_cnt > max_es_cnt`): early_stop=2 runs 3 failing ones."""
    return best_epoch >= 0 and last_epoch - best_epoch > early_stop


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_epoch(model, loss_fn, loader, optimizer, scheduler, epoch: int, cfg: Config, seed: int) -> dict[str, float]:
    """One pass over the training videos; returns each loss term's mean over the epoch."""
    model.train()
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # hard-negative draws, resume-safe
    totals: dict[str, float] = {}
    steps = 0
    precision, device = cfg.train.precision, cfg.train.device
    with step_precision(precision, device):  # once per epoch: the same switch for every step
        for batch in tqdm(loader, desc=f"epoch {epoch}", leave=False, mininterval=5):
            batch = _to(batch, device)
            terms = forward_and_losses(model, loss_fn, batch, precision, device, epoch=epoch, generator=generator)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0 and not clips_inside(cfg.train):  # adamw: one global clip
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
            totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
            steps += 1
    return {k: v / max(steps, 1) for k, v in totals.items()}


def _build(cfg: Config, n_train_videos: int):
    model = create_model(cfg.model).to(cfg.train.device)
    if cfg.train.activation_checkpointing:
        use_activation_checkpointing(model, cfg.model.name)
    loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden, model_name=cfg.model.name,
                          branches=score_branches(model)).to(cfg.train.device)
    optimizer = create_optimizer(cfg.train, model, loss_fn)  # the loss may own a CBVA head
    steps_per_epoch = math.ceil(n_train_videos / cfg.train.batch_size)
    scheduler = create_scheduler(cfg.train, optimizer, steps_per_epoch * cfg.train.epochs)
    return model, loss_fn, optimizer, scheduler


def use_activation_checkpointing(model, model_name: str) -> int:
    """Turn on recomputation in the model's layers (how many); a ConfigError if it has none."""
    layers = enable_activation_checkpointing(model)
    if layers == 0:
        raise ConfigError(f"train.activation_checkpointing: model {model_name!r} has no layer that can "
                          "recompute its activations (gmmformer_v2 and gmmformer_v2_lite have); set it to "
                          "false", "train.activation_checkpointing")
    return layers


def train(cfg: Config, seed: int, data: TrainData, out_dir: str | Path) -> dict:
    """Train with early stopping on val SumR; resume from out_dir/checkpoints/last.pt if present."""
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    deterministic_algorithms()
    seed_everything(seed)
    for key, problem in training_problems(cfg)[:1]:
        raise ConfigError(f"training config: {key}: {problem}", key)
    check_precision(cfg.train.precision, cfg.train.device)
    train_set, val_set = _splits(cfg, data)
    check_disjoint_splits({str(data.train_captions): train_set.index.videos,
                           str(data.val_captions): val_set.index.videos})  # selection on trained videos
    if len(train_set.index.videos) < 2:  # the workflow refuses this before extraction (video_list)
        raise AnnotationError(f"{data.train_captions}: the train split has {len(train_set.index.videos)} "
                              "video(s); training needs at least 2 (each video is contrasted with the others)")
    for name, split in (("train", train_set), ("val", val_set)):
        if split.truncated_captions:
            print(f"{name}: {split.truncated_captions} captions cut to max_query_len={cfg.model.max_query_len} tokens")
    model, loss_fn, optimizer, scheduler = _build(cfg, len(train_set))
    identity = run_identity(cfg, seed, data)
    state = {"epoch": -1, "best_sumr": -1.0, "best_epoch": -1, "history": []}
    saved = _resumable(ckpt_dir, identity)
    if saved is not None:
        model.load_state_dict(saved["model"])
        loss_fn.load_state_dict(saved["loss"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        state = {k: saved[k] for k in state}
        print(f"resuming after epoch {state['epoch']} from {ckpt_dir / 'last.pt'}")
    for epoch in range(state["epoch"] + 1, cfg.train.epochs):
        if should_stop(epoch - 1, state["best_epoch"], cfg.train.early_stop):  # here: a resume sees it
            break
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=collate_videos,
            generator=torch.Generator().manual_seed(seed + epoch))
        losses = train_epoch(model, loss_fn, loader, optimizer, scheduler, epoch, cfg, seed)
        val = evaluate_split(model, val_set, cfg.eval, cfg.train.device)
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "loss": losses, "val": val})
        print(json.dumps(state["history"][-1], sort_keys=True))
        if val["SumR"] > state["best_sumr"]:
            state["best_sumr"], state["best_epoch"] = val["SumR"], epoch
            save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
        save_checkpoint(ckpt_dir / "last.pt", {
            **state, "model": model.state_dict(), "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(), "identity": identity})
    return _finish(cfg, seed, out_dir, state)


def _splits(cfg: Config, data: TrainData) -> tuple[PRVRDataset, PRVRDataset]:
    """The train and val datasets: from the feature cache when data has one, else from the stores;
    the train set reads DL-DKD's own teacher files beside it when data has them."""
    val_video, val_text, val_cache = data.val_stores()
    if data.feature_cache is None:
        train_set = PRVRDataset.for_model(data.train_captions, data.video_feats, data.text_feats, cfg.model)
        val_set = PRVRDataset.for_model(data.val_captions, val_video, val_text, cfg.model)
    else:
        ft, q = cfg.model.frame_tokens, cfg.model.max_query_len
        cache = open_cache(data.feature_cache, [data.train_captions], data.video_feats, data.text_feats, ft, q)
        cache_of_val = cache if val_cache == data.feature_cache else FeatureCache(val_cache)
        cache_of_val.check_inputs([data.val_captions], val_video, val_text, ft, q)
        train_set, val_set = PRVRDataset.from_cache(cache, data.train_captions), PRVRDataset.from_cache(cache_of_val, data.val_captions)
    if data.teacher_video is not None and data.teacher_text is not None:
        train_set.teacher = TeacherFeatures(data.teacher_video, data.teacher_text, cfg.model.frame_tokens)
    return train_set, val_set


def run_identity(cfg: Config, seed: int, data: TrainData) -> dict:
    """Everything that determines a training run: its training settings, seed, input files, code."""
    return {"training_settings": training_settings(cfg), "seed": seed, "code": source_hash(),
            "inputs": {name: sha256_file(path) for name, path in sorted(vars(data).items())}}


def _resumable(ckpt_dir: Path, identity: dict) -> dict | None:
    """This run's last checkpoint, or None; another run's (or an unreadable) checkpoint folder is
    set aside with the reason logged, and training starts over."""
    if not (ckpt_dir / "last.pt").exists():
        return None
    try:
        return load_checkpoint(ckpt_dir / "last.pt", identity)
    except CheckpointError as err:
        dest = set_aside(ckpt_dir, str(err))
        print(f"not resuming: {err}; moved to {dest}, starting over")
        return None


def _finish(cfg: Config, seed: int, out_dir: Path, state: dict) -> dict:
    """Write model.pt (best epoch's weights) and train_log.jsonl; return the summary."""
    best = torch.load(out_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    save_checkpoint(out_dir / "model.pt", {"model": best["model"], "config": to_dict(cfg), "seed": seed,
                                           "epoch": best["epoch"]})
    write_text(out_dir / "train_log.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in state["history"]))
    return {"best_epoch": state["best_epoch"], "best_val_sumr": state["best_sumr"], "epochs_run": state["epoch"] + 1}


def load_trained(model_path: str | Path, device: str | None = None):
    """Rebuild a model from model.pt (its own saved config) and load its weights.

    device: where to put it; default the device the model was trained with (config train.device).
    """
    return model_from_saved(read_model_file(model_path), str(model_path), device)
