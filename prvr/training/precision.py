"""The arithmetic of a training step (config train.precision): float32, tf32 or bfloat16.

    with step_precision("bfloat16", "cuda"):
        terms = forward_and_losses(model, loss_fn, batch, "bfloat16", "cuda", epoch=3, generator=g)

- "float32" (default, the authors' reading): every product in float32; on cuda TF32 is switched off
  for the step, so torch's global default cannot change a run's numbers.
- "tf32" (cuda only): float32 storage, matrix products in TensorFloat-32 (10-bit mantissa inputs,
  float32 accumulation); refused on CPU, which has no such mode.
- "bfloat16": the model's forward runs under torch.autocast(bfloat16) (matrix products in bfloat16
  with float32 accumulation, the rest as autocast decides); its outputs are cast to float32 and the
  losses run in float32 with autocast off (on cuda with TF32 products). Weights, gradients and the
  optimiser state stay float32 (autocast keeps master weights; backward follows the forward's dtypes).

Token merging (the MSC models' clip tokens) runs in float32 under a bfloat16 step too: the authors
merge in the data loader, and its pair choices are argmax decisions that bfloat16 rounding flips
(on a tiny random model the clip branch's InfoNCE moved 0.151 -> 0.243 with merging in bfloat16,
0.151 -> 0.151 with it in float32).

Why the losses stay float32: they hold the operations bfloat16 handles worst (softmax and logsumexp
over a batch of logits, TCPL's arccos of cosines near 1, whose slope grows without bound, margins of
0.1-0.2 between cosines that bfloat16 rounds by up to 2^-8) and only 1-4 % of a step's FLOPs
(bench/bench_train_step.py), so float32 costs little there. bench/bench_train_step.py --precision
bfloat16 --loss-error prints each term's relative difference from float32 on the same batch.
"""
from __future__ import annotations

import contextlib

import torch

from prvr.errors import ConfigError

PRECISIONS = ("float32", "tf32", "bfloat16")


def check_precision(precision: str, device: str) -> None:
    """A ConfigError for an unknown precision, or tf32 off cuda."""
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})",
                          "train.precision")
    if precision == "tf32" and torch.device(device).type != "cuda":
        raise ConfigError(f"train.precision: tf32 needs a cuda device (train.device is {device!r}); use "
                          "float32 or bfloat16", "train.precision")


@contextlib.contextmanager
def _tf32(enabled: bool):
    """TF32 matrix products on cuda on or off for the block; the previous setting afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def step_precision(precision: str, device: str):
    """Context for a whole step (forward, losses, backward, update): the TF32 switch on cuda."""
    check_precision(precision, device)
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return _tf32(precision != "float32")


def _as_float32(value):
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    if isinstance(value, dict):
        return {k: _as_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float32(v) for v in value)
    return value


def forward_and_losses(model, loss_fn, batch: dict, precision: str, device: str, **loss_kwargs) -> dict:
    """The loss terms {name: scalar float32} of one batch: the model's forward at `precision`, the
    losses in float32 (module docstring)."""
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    with autocast:
        out = model(frame_feats=batch["frame_feats"], query_feats=batch["query_feats"],
                    query_mask=batch["query_mask"])
    out = _as_float32(out)  # (the outputs' shapes) float32
    with torch.autocast(torch.device(device).type, enabled=False):
        return loss_fn(**out, **{k: v for k, v in batch.items() if k not in out}, **loss_kwargs)
