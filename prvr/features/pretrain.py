"""Pretrain the demo's tiny open_clip model on generated (frame, caption) pairs, in the DAG.

    report = pretrain_tiny_clip(ClipPretrainConfig(), "work/demo/tiny_clip.pt")

The weights file is a plain state_dict that `open_clip.create_model_and_transforms("prvr-tiny-clip",
pretrained=<file>)` loads (prvr.features.clip.load_clip does exactly that). A small JSON report
beside it (`report_path(out_path)`) gives image->text and text->image retrieval on held-out pairs
(chance level next to it) and, with the auxiliary loss, the held-out accuracy of every attribute
head, so one can see what the model learned.

Training: open_clip's ClipLoss on shuffled batches, plus `aux_weight` x the attribute heads' loss
(prvr.features.attribute_heads) when the pairs come with their attributes (the DAG generates them,
prvr.demo.pretraining_pairs, so it knows them); AdamW without weight decay on gains, biases and
embeddings, linear warm-up then cosine decay, logit scale clamped at 100 as in open_clip's
training; seeded and deterministic on CPU. Batches of random stills, not hard-negative groups:
groups of 8 stills sharing scene and colour slowed the image tower down (held-out shape accuracy
0.58 against 0.90 with random batches, docs/demo.md "What the embedded CLIP sees").
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
from prvr.features.attribute_heads import AttributeHeads
from prvr.features.clip import TINY_CLIP, ClipEncoder, frames_to_input, load_clip, text_token_features
from prvr.io import atomic_path, write_json

# pairs_fn(n, seed, image_size) -> (frames (n, S, S, 3) uint8, captions[, labels: name -> array])
PairsFn = Callable[[int, int, int], tuple]
WARMUP_FRACTION = 0.05
MAX_LOGIT_SCALE = math.log(100.0)
# shape is what the 32 px image tower learns slowest: its head counts 3 times (measured at 600 steps
# without text: held-out shape accuracy 0.73 at weight 1, 0.83 at weight 3)
AUX_TERM_WEIGHTS = {"image_shape": 3.0}


def report_path(out_path: str | Path) -> Path:
    """The held-out report written beside the weights: tiny_clip.pt -> tiny_clip.pretrain.json."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".pretrain.json")


def _default_pairs() -> PairsFn:
    from prvr.demo.pretraining_pairs import sample_pretraining_pairs  # the corpus' vocabulary and renderer
    return sample_pretraining_pairs


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _optimizer(model: torch.nn.Module, cfg: ClipPretrainConfig,
               heads: AttributeHeads | None = None) -> torch.optim.AdamW:
    """AdamW; 1-D params (gains, biases, logit scale), embeddings and the attribute heads get no
    weight decay (as open_clip)."""
    def no_decay(name: str, param: torch.Tensor) -> bool:
        return param.ndim < 2 or "embedding" in name or "logit_scale" in name
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    if heads is not None:
        groups.append({"params": list(heads.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, total: int, base_lr: float) -> float:
    warmup = max(1, int(WARMUP_FRACTION * total))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of `batch_size`; the last partial batch is dropped unless it is the only one."""
    order = torch.randperm(n, generator=generator)  # (n,)
    if n < batch_size:
        return [order] if n else []
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _features(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor):
    """What CLIP.forward returns (normalised image and text embeddings, exp(logit scale)), but with
    the text pass cut at the batch's longest caption (equal at the end-of-text tokens, much cheaper)."""
    image_features = F.normalize(model.encode_image(images), dim=-1)  # (B, D)
    token_features, ends = text_token_features(model, tokens)  # (B, L, D), (B,)
    text_features = F.normalize(token_features[torch.arange(len(ends)), ends], dim=-1)  # (B, D)
    return image_features, text_features, model.logit_scale.exp()


@torch.no_grad()
def _heldout_embeddings(encoder: ClipEncoder, frames: np.ndarray, captions: list[str]):
    """Normalised image (N, D) and text (N, D) embeddings of held-out pairs."""
    model = encoder.model
    images = F.normalize(model.encode_image(frames_to_input(encoder, frames)), dim=-1)
    texts = F.normalize(model.encode_text(encoder.tokenizer(captions)), dim=-1)
    return images, texts


@torch.no_grad()
def heldout_retrieval(encoder: ClipEncoder, frames: np.ndarray, captions: list[str]) -> dict:
    """Image->text and text->image R@1/R@5 on held-out pairs; a retrieved duplicate caption counts."""
    images, texts = _heldout_embeddings(encoder, frames, captions)
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


def _split_pairs(pairs: tuple) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(frames, captions, labels); labels {} when the pairs function gives none."""
    frames, captions, *rest = pairs
    return frames, captions, (rest[0] if rest else {})


def _rows(labels: dict[str, np.ndarray], batch: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(values[batch.numpy()]) for name, values in labels.items()}


def _check(cfg: ClipPretrainConfig, model_name: str, n_heldout: int) -> None:
    if model_name != TINY_CLIP:  # generated 32 px pairs cannot train a real CLIP: it needs its weights
        raise PrvrError(f"clip.model {model_name!r}: only {TINY_CLIP} is pretrained in the pipeline; "
                        f"give {model_name} an open_clip tag (e.g. openai) or a weights file in clip.pretrained")
    if min(cfg.n_pairs, cfg.epochs, cfg.batch_size, n_heldout) <= 0 or cfg.aux_weight < 0:
        raise ValueError(f"pretraining needs positive n_pairs, epochs, batch_size, n_heldout and "
                         f"aux_weight >= 0: {cfg}")


def pretrain_tiny_clip(cfg: ClipPretrainConfig, out_path: str | Path, model_name: str = TINY_CLIP,
                       n_heldout: int = 500, pairs_fn: PairsFn | None = None) -> dict:
    """Train `model_name` from scratch with CLIP's loss (+ the attribute heads' loss); save its
    state_dict and a held-out report.

    pairs_fn: prvr.demo.pretraining_pairs.sample_pretraining_pairs by default; held-out pairs use
    seed + 1. Returns the report.
    """
    _check(cfg, model_name, n_heldout)
    started = time.time()
    generator = _seed_everything(cfg.seed)
    encoder = load_clip(model_name, None, allow_random=True)  # random init, drawn from the seeded torch RNG
    pairs_fn = pairs_fn or _default_pairs()
    frames, captions, labels = _split_pairs(pairs_fn(cfg.n_pairs, cfg.seed, encoder.image_size))
    tokens = encoder.tokenizer(captions)  # (N, 77), tokenised once
    model = encoder.model.train()
    heads = AttributeHeads(encoder.embed_dim, labels) if cfg.aux_weight > 0 and labels else None
    optimizer = _optimizer(model, cfg, heads)
    loss_fn = open_clip.ClipLoss()
    total_steps = cfg.epochs * len(_batches(len(captions), cfg.batch_size, torch.Generator()))
    epoch_losses, aux_losses, step = [], [], 0
    progress = tqdm(total=total_steps, desc=f"pretrain {model_name}", unit="step", mininterval=5)  # a line per 5 s in the log
    for _ in range(cfg.epochs):
        losses, aux = [], {}
        for batch in _batches(len(captions), cfg.batch_size, generator):
            for param_group in optimizer.param_groups:
                param_group["lr"] = _lr_at(step, total_steps, cfg.lr)
            images = frames_to_input(encoder, frames[batch.numpy()])  # (B, 3, S, S)
            image_features, text_features, logit_scale = _features(model, images, tokens[batch])
            loss = contrastive = loss_fn(image_features, text_features, logit_scale)
            if heads is not None:
                terms = heads.terms(image_features, text_features, _rows(labels, batch))
                loss = loss + cfg.aux_weight * sum(AUX_TERM_WEIGHTS.get(n, 1.0) * t for n, t in terms.items())
                for name, term in terms.items():
                    aux.setdefault(name, []).append(term.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(contrastive.item())
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{contrastive.item():.3f}", refresh=False)
        epoch_losses.append(float(np.mean(losses)) if losses else math.nan)
        aux_losses.append({name: round(float(np.mean(v)), 4) for name, v in aux.items()})
    progress.close()
    model.eval()
    held_frames, held_captions, held_labels = _split_pairs(pairs_fn(n_heldout, cfg.seed + 1, encoder.image_size))
    heldout = heldout_retrieval(encoder, held_frames, held_captions)
    if heads is not None:
        images, texts = _heldout_embeddings(encoder, held_frames, held_captions)
        heldout["attributes"] = heads.scores(images, texts, _rows(held_labels, torch.arange(n_heldout)))
    report = {"model": model_name, "config": dataclasses.asdict(cfg), "epoch_losses": epoch_losses,
              "aux_losses": aux_losses if heads is not None else None, "aux_term_weights": AUX_TERM_WEIGHTS,
              "steps": step, "seconds": round(time.time() - started, 1), "heldout": heldout,
              "n_params": sum(p.numel() for p in model.parameters()),
              "torch_threads": torch.get_num_threads()}
    write_json(report_path(out_path), report)
    with atomic_path(out_path) as tmp:  # written last: the weights existing means the report does too
        torch.save(model.state_dict(), tmp)
    return report
