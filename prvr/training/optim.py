"""Optimiser, learning-rate schedule and weight-decay groups of the training loop.

    from prvr.training.optim import create_optimizer, create_scheduler
    optimizer = create_optimizer(cfg.train, model, loss_fn)
    scheduler = create_scheduler(cfg.train, optimizer, total_steps)   # step both once per batch

train.optimizer "bert_adam" reproduces the optimiser of the released MSC_PRVR / GMMFormer code
(BERT's Adam): no bias correction, eps 1e-6, decoupled weight decay added to the Adam direction,
each projection's gradient clipped to norm `grad_clip` on its own (a parameter tensor, or each row
block of a stacked q/k/v tensor: prvr.models.stacked, as the authors' separate linears are clipped).
"adamw" is torch's AdamW;
the trainer then clips the global gradient norm before the step (`clips_inside`).

The authors keep their schedule inside the optimiser, indexed by each parameter's own step count
from 0. Here the schedule is a LambdaLR on the group lr instead, so it saves and resumes like any
torch scheduler: LambdaLR applies factor(0) to the first optimizer.step() and factor(k) to the
(k+1)-th, which is the authors' indexing. Schedule "bert" is their warmup_linear, whose factor(0)
is 0 (the first update only fills Adam's moments); "shifted" warms up as (step + 1) / warm-up
steps, i.e. step k gets bert's warm-up value of step k + 1, so the first step already moves.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from prvr.config import TrainConfig
from prvr.models.stacked import row_blocks

BERT_EPS = 1e-6
BERT_BETAS = (0.9, 0.999)


def _undecorated(name: str):
    """torch.optim.Optimizer.<name> without torch's decorators (functools.wraps keeps the original)."""
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class BertAdam(torch.optim.Optimizer):
    """Adam without bias correction, weight decay added to the update, per-tensor gradient clip.

    For each parameter p with gradient g (lr is the group's current, already scheduled, lr):
        g <- g * min(1, max_grad_norm / (|g| + 1e-6))     if max_grad_norm > 0 (this tensor only;
                                                           each row block of a stacked projection)
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (sqrt(v) + eps) + weight_decay * p)
    The clip rescales p.grad in place, as torch.nn.utils.clip_grad_norm_ does.
    """

    # torch wraps these four in torch._disable_dynamo, which imports torch._dynamo on the first call:
    # 1.5-5 s of every training process (of a demo training job's ~10 s), for a wrapper that only
    # matters under torch.compile, which never runs this optimiser. The plain methods, where torch
    # keeps them (__wrapped__), else torch's own.
    add_param_group = _undecorated("add_param_group")
    zero_grad = _undecorated("zero_grad")
    state_dict = _undecorated("state_dict")
    load_state_dict = _undecorated("load_state_dict")

    def __init__(self, params, lr: float, betas: tuple[float, float] = BERT_BETAS, eps: float = BERT_EPS,
                 weight_decay: float = 0.0, max_grad_norm: float = 1.0):
        if lr < 0 or eps < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"BertAdam: invalid lr={lr}, eps={eps} or betas={betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError("BertAdam does not support sparse gradients")
        if group["max_grad_norm"] > 0:
            _clip_tensor_(grad, group["max_grad_norm"], row_blocks(p))
        state = self.state[p]
        if not state:  # m and v live in the state so optimizer.state_dict() carries them across a resume
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        b1, b2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        update = m / (v.sqrt() + group["eps"])
        if group["weight_decay"] > 0:
            update += group["weight_decay"] * p
        p.sub_(group["lr"] * update)  # this rounding order matches the released code bit for bit (CPU)


def _clip_tensor_(grad: torch.Tensor, max_norm: float, blocks: int = 1) -> None:
    """Scale one gradient tensor, or each of its `blocks` equal row blocks, to norm <= max_norm
    (clip_grad_norm_'s rule, 1e-6 guard included); the factors stay tensors so a GPU step needs no
    host sync."""
    if blocks == 1:
        norm = torch.linalg.vector_norm(grad.detach(), 2.0)
        grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return
    if grad.shape[0] % blocks or not grad.is_contiguous():
        raise ValueError(f"a stacked gradient {tuple(grad.shape)} does not split into {blocks} contiguous row blocks")
    rows = grad.view(blocks, -1)  # (blocks, rows per block x columns), a view: scaled in place
    norms = torch.linalg.vector_norm(rows.detach(), 2.0, dim=1, keepdim=True)  # (blocks, 1)
    rows.mul_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))


# --- schedules: step -> lr multiplier, step counted from 0 (the first optimizer.step()) ---

def bert_warmup_linear(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """The authors' warmup_linear: at progress p = step / total_steps, p / w while p < w, then
    (1 - p) / (1 - w) down to 0. factor(0) = 0; w = 0 gives pure linear decay from 1."""
    total = float(max(total_steps, 1))
    w = float(warmup_fraction)

    def factor(step: int) -> float:
        progress = step / total
        if progress < w:
            return progress / w
        if w >= 1.0:  # only reached at or past the last step: the decay line is undefined there
            return 0.0
        return max((progress - 1.0) / (w - 1.0), 0.0)
    return factor


def warmup_linear(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Schedule "shifted": linear warm-up over ceil(total * w) steps ((step + 1) / warmup, so the
    first step already has a non-zero lr), then linear decay to 0 at total_steps."""
    warmup = max(1, math.ceil(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


SCHEDULES: dict[str, Callable[[int, float], Callable[[int], float]]] = {
    "bert": bert_warmup_linear,
    "shifted": warmup_linear,
}


# --- weight-decay groups ---

def _no_decay_names(module: nn.Module) -> set[str]:
    """Full parameter names the module asks to keep free of decay (models: their LayerNorms)."""
    method = getattr(module, "no_weight_decay", None)
    return set(method()) if callable(method) else set()


def named_trainable(model: nn.Module, loss_fn: nn.Module | None) -> list[tuple[str, nn.Parameter]]:
    """The model's parameters, then the loss's own (CBVA head) as "loss.<name>"; in the authors'
    code that head (vproj_clip) is part of the model, under the same decay rule."""
    named = list(model.named_parameters())
    if loss_fn is not None:
        named += [(f"loss.{n}", p) for n, p in loss_fn.named_parameters()]
    return [(n, p) for n, p in named if p.requires_grad]


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, rule: str,
                 no_decay: set[str] = frozenset()) -> list[dict]:
    """Optimizer param groups. rule "all": one group, all decayed. rule "authors": no decay for a
    name containing "bias" (their substring test) or listed in `no_decay`; the rest decayed."""
    named_params = list(named_params)
    if rule == "all":
        return [{"params": [p for _, p in named_params], "weight_decay": weight_decay}]
    if rule != "authors":
        raise ValueError(f"train.weight_decay_groups: unknown rule {rule!r} (known: authors, all)")
    unknown = set(no_decay) - {n for n, _ in named_params}
    if unknown:  # a stale name would otherwise be decayed without a word
        raise ValueError(f"no_weight_decay() names no parameter: {sorted(unknown)}")
    exempt = [("bias" in n or n in no_decay) for n, _ in named_params]
    decayed = [p for (_, p), e in zip(named_params, exempt) if not e]
    undecayed = [p for (_, p), e in zip(named_params, exempt) if e]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def model_param_groups(train_cfg: TrainConfig, model: nn.Module, loss_fn: nn.Module | None) -> list[dict]:
    """param_groups over model and loss parameters with both modules' no_weight_decay() names."""
    no_decay = _no_decay_names(model)
    if loss_fn is not None:
        no_decay |= {f"loss.{n}" for n in _no_decay_names(loss_fn)}
    return param_groups(named_trainable(model, loss_fn), train_cfg.weight_decay,
                        train_cfg.weight_decay_groups, no_decay)


# --- factories ---

def clips_inside(train_cfg: TrainConfig) -> bool:
    """True when the optimiser clips each tensor itself, so the trainer must not clip globally."""
    return train_cfg.optimizer == "bert_adam"


def create_optimizer(train_cfg: TrainConfig, model: nn.Module, loss_fn: nn.Module | None = None):
    """The optimiser named by train.optimizer over the model's and the loss's parameters."""
    groups = model_param_groups(train_cfg, model, loss_fn)
    if train_cfg.optimizer == "bert_adam":
        return BertAdam(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay,
                        max_grad_norm=train_cfg.grad_clip)
    if train_cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {train_cfg.optimizer!r} (known: bert_adam, adamw)")


def create_scheduler(train_cfg: TrainConfig, optimizer, total_steps: int):
    """LambdaLR with train.schedule over total_steps optimizer steps; step it after each batch."""
    make = SCHEDULES.get(train_cfg.schedule)
    if make is None:
        raise ValueError(f"train.schedule: unknown schedule {train_cfg.schedule!r} "
                         f"(known: {', '.join(sorted(SCHEDULES))})")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, make(total_steps, train_cfg.warmup))
