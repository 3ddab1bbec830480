"""Pretrain the demo's tiny open_clip model on generated (frame, caption) pairs, in the DAG.

    report = pretrain_tiny_clip(ClipPretrainConfig(), "work/demo/tiny_clip.pt")

The weights file is a plain state_dict that `open_clip.create_model_and_transforms("prvr-tiny-clip",
pretrained=<file>)` loads (prvr.features.clip.load_clip does exactly that). A small JSON report
beside it (`report_path(out_path)`) gives image->text and text->image retrieval on held-out pairs,
so one can see the model learned something (chance level is reported next to it).
Batches are made of whole groups of pairs when the pairs function has a `group` attribute
(sample_pretraining_pairs: consecutive groups sharing scene and colour, differing in shape,
position or size), so every frame meets hard negatives that only its shape or position tells apart;
the held-out pairs come in such groups too. Training: open_clip's ClipLoss, AdamW without weight decay on gains/biases/embeddings, linear
warm-up then cosine decay, logit scale clamped at 100 as in open_clip's training; seeded and
deterministic on CPU.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm import tqdm

from prvr.config import ClipPretrainConfig
from prvr.errors import PrvrError
from prvr.features.clip import TINY_CLIP, ClipEncoder, frames_to_input, load_clip, text_token_features
from prvr.io import atomic_path, write_json

PairsFn = Callable[[int, int, int], tuple[np.ndarray, list[str]]]
WARMUP_FRACTION = 0.05
MAX_LOGIT_SCALE = math.log(100.0)


def report_path(out_path: str | Path) -> Path:
    """The held-out report written beside the weights: tiny_clip.pt -> tiny_clip.pretrain.json."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".pretrain.json")


def _default_pairs() -> PairsFn:
    from prvr.data.synthetic import sample_pretraining_pairs  # the corpus' own vocabulary and renderer
    return sample_pretraining_pairs


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _optimizer(model: torch.nn.Module, cfg: ClipPretrainConfig) -> torch.optim.AdamW:
    """AdamW; 1-D params (gains, biases, logit scale) and embeddings get no weight decay (as open_clip)."""
    def no_decay(name: str, param: torch.Tensor) -> bool:
        return param.ndim < 2 or "embedding" in name or "logit_scale" in name
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, total: int, base_lr: float) -> float:
    warmup = max(1, int(WARMUP_FRACTION * total))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def _batches(n: int, batch_size: int, generator: torch.Generator, group: int = 1) -> list[torch.Tensor]:
    """Shuffled index batches made of whole groups (`group` consecutive pairs, each other's hard
    negatives; batch_size // group groups a batch, at least one); the last partial batch is dropped
    unless it is the only one."""
    group = max(1, group)
    starts = torch.arange(0, n, group)[torch.randperm(-(-n // group), generator=generator)]  # (G,)
    groups = [torch.arange(int(s), min(int(s) + group, n)) for s in starts]
    per = max(1, batch_size // group)
    if len(groups) < per:
        return [torch.cat(groups)] if groups else []
    return [torch.cat(groups[i:i + per]) for i in range(0, len(groups) - per + 1, per)]


def _features(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor):
    """What CLIP.forward returns (normalised image and text embeddings, exp(logit scale)), but with
    the text pass cut at the batch's longest caption (equal at the end-of-text tokens, much cheaper)."""
    image_features = F.normalize(model.encode_image(images), dim=-1)  # (B, D)
    token_features, ends = text_token_features(model, tokens)  # (B, L, D), (B,)
    text_features = F.normalize(token_features[torch.arange(len(ends)), ends], dim=-1)  # (B, D)
    return image_features, text_features, model.logit_scale.exp()


@torch.no_grad()
def heldout_retrieval(encoder: ClipEncoder, frames: np.ndarray, captions: list[str]) -> dict:
    """Image->text and text->image R@1/R@5 on held-out pairs; a retrieved duplicate caption counts."""
    model = encoder.model
    images = F.normalize(model.encode_image(frames_to_input(encoder, frames)), dim=-1)
    texts = F.normalize(model.encode_text(encoder.tokenizer(captions)), dim=-1)
    sims = images @ texts.T  # (N, N)
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    caption_ids = torch.tensor([ids[c] for c in captions])  # same text -> same id
    same = caption_ids[:, None] == caption_ids[None, :]  # (N, N) pairs that are equally correct
    out = {"n_pairs": len(captions), "n_distinct_captions": len(ids)}
    for direction, matrix in (("image_to_text", sims), ("text_to_image", sims.T)):
        top = matrix.topk(min(5, matrix.shape[1]), dim=1).indices  # (N, 5)
        hits = same.gather(1, top)  # (N, 5) each retrieved item correct?
        out[f"{direction}_r1"] = float(hits[:, 0].float().mean())
        out[f"{direction}_r5"] = float(hits.any(dim=1).float().mean())
    out["chance_r1"] = float(same.float().mean())
    return out


def pretrain_tiny_clip(cfg: ClipPretrainConfig, out_path: str | Path, model_name: str = TINY_CLIP,
                       n_heldout: int = 500, pairs_fn: PairsFn | None = None) -> dict:
    """Train `model_name` from scratch with CLIP's loss; save its state_dict and a held-out report.

    pairs_fn(n, seed, image_size) -> (frames uint8 (n, S, S, 3), captions): defaults to
    prvr.data.synthetic.sample_pretraining_pairs; held-out pairs use seed + 1. Returns the report.
    """
    if model_name != TINY_CLIP:  # generated 32 px pairs cannot train a real CLIP: it needs its weights
        raise PrvrError(f"clip.model {model_name!r}: only {TINY_CLIP} is pretrained in the pipeline; "
                        f"give {model_name} an open_clip tag (e.g. openai) or a weights file in clip.pretrained")
    if min(cfg.n_pairs, cfg.epochs, cfg.batch_size, n_heldout) <= 0:
        raise ValueError(f"pretraining needs positive n_pairs, epochs, batch_size and n_heldout: {cfg}")
    started = time.time()
    generator = _seed_everything(cfg.seed)
    encoder = load_clip(model_name, None, allow_random=True)  # random init, drawn from the seeded torch RNG
    pairs_fn = pairs_fn or _default_pairs()
    group = int(getattr(pairs_fn, "group", 1))  # pairs come in groups of hard negatives: batch them whole
    frames, captions = pairs_fn(cfg.n_pairs, cfg.seed, encoder.image_size)
    tokens = encoder.tokenizer(captions)  # (N, 77), tokenised once
    model = encoder.model.train()
    optimizer = _optimizer(model, cfg)
    loss_fn = open_clip.ClipLoss()
    total_steps = cfg.epochs * len(_batches(len(captions), cfg.batch_size, torch.Generator(), group))
    epoch_losses, step = [], 0
    progress = tqdm(total=total_steps, desc=f"pretrain {model_name}", unit="step")
    for _ in range(cfg.epochs):
        losses = []
        for batch in _batches(len(captions), cfg.batch_size, generator, group):
            for param_group in optimizer.param_groups:
                param_group["lr"] = _lr_at(step, total_steps, cfg.lr)
            images = frames_to_input(encoder, frames[batch.numpy()])  # (B, 3, S, S)
            loss = loss_fn(*_features(model, images, tokens[batch]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(loss.item())
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
        epoch_losses.append(float(np.mean(losses)) if losses else math.nan)
    progress.close()
    model.eval()
    heldout = heldout_retrieval(encoder, *pairs_fn(n_heldout, cfg.seed + 1, encoder.image_size))
    report = {"model": model_name, "config": dataclasses.asdict(cfg), "epoch_losses": epoch_losses,
              "steps": step, "seconds": round(time.time() - started, 1), "heldout": heldout,
              "n_params": sum(p.numel() for p in model.parameters()),
              "torch_threads": torch.get_num_threads()}
    write_json(report_path(out_path), report)
    with atomic_path(out_path) as tmp:  # written last: the weights existing means the report does too
        torch.save(model.state_dict(), tmp)
    return report
