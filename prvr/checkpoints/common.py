"""What every release format shares: reading their file without their code, the tensor mapping
(each of their tensors used exactly once, shapes checked), the config and the model.pt written.

Reading without their code: their files pickle objects of their own modules (MS-SL / DL-DKD's
`model_cfg` is an easydict.EasyDict; MSC / GMMFormer's optimizer state holds BertAdam's
Opts.optimization.WarmupLinearSchedule). `load_release_file` unpickles through `ReleaseUnpickler`,
which resolves torch, numpy, collections and plain builtins as usual and maps every other class to
a `ForeignObject` stand-in (a dict subclass that keeps its items and pickled attributes), so no
module of theirs is imported, nothing of theirs runs, and torch >= 2.6's weights_only default is
not needed. A plan maps each prvr parameter to the list of their tensor names concatenated along
dim 0 into it (prvr fuses q/k/v into `qkv`, k/v into `key_value`):

    plan = {"query_encoder.layer.attention.qkv.weight": ["query_encoder.self.query.weight", ...]}
    state = assemble(theirs, plan, expected_shapes, not_used, source)
"""
from __future__ import annotations

import hashlib
import pickle
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from prvr.config import Config, from_dict, merge, to_dict
from prvr.errors import PrvrError
from prvr.training.checkpoint import save_checkpoint

SAFE_BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "dict", "list", "tuple",
                 "int", "float", "bool", "str", "bytes", "object"}
TRUSTED_MODULES = ("torch", "numpy", "collections", "_codecs")


class CheckpointImportError(PrvrError, ValueError):
    """A release checkpoint that cannot be mapped onto a prvr model; the message names file and tensor."""


@dataclass
class ReleaseFile:
    """What a release's checkpoint holds: its model tensors (DataParallel prefix removed), the
    saved config (their cfg dict or model_cfg EasyDict, as a dict), epoch, model_val, seed."""
    state: dict
    config: dict
    epoch: object = None
    model_val: object = None
    seed: object = None


@dataclass(frozen=True)
class ReleaseFormat:
    """One release's checkpoint format: `read` (unpickled object, path) -> ReleaseFile; `settings`
    (ReleaseFile, path) -> (config overrides {"model": ..., "eval": ...}, their tensors not used
    {name: why}); `plan` (prvr ModelConfig) -> {prvr param: [their params]}; `defaults`: settings
    their file does not hold, used when no base config is given (their code's defaults)."""
    name: str
    model: str
    read: Callable
    settings: Callable
    plan: Callable
    defaults: dict = field(default_factory=dict)


class ForeignObject(dict):
    """Stand-in for a class of the release's own code: keeps dict items and pickled attributes."""

    def __init__(self, *args, **kwargs):  # reconstructors may pass their constructor's arguments
        super().__init__()


class ReleaseUnpickler(pickle.Unpickler):
    """Unpickler that never imports the release's modules; see the module docstring."""

    _stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in SAFE_BUILTINS:
            return super().find_class(module, name)
        if module.split(".")[0] in TRUSTED_MODULES:
            return super().find_class(module, name)
        key = (module, name)
        if key not in self._stand_ins:
            self._stand_ins[key] = type(name, (ForeignObject,), {"__module__": f"foreign.{module}"})
        return self._stand_ins[key]


release_pickle = types.SimpleNamespace(Unpickler=ReleaseUnpickler, load=lambda f, **kw: ReleaseUnpickler(f, **kw).load(),
                                       __name__="prvr_release_pickle")


def load_release_file(path: Path) -> object:
    """torch.load of their file on CPU through ReleaseUnpickler; one-line error if it is not a torch file."""
    if not path.is_file():
        raise CheckpointImportError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=release_pickle)
    except (pickle.UnpicklingError, EOFError, RuntimeError, UnicodeDecodeError, ValueError, AttributeError,
            IndexError, KeyError, TypeError, OSError, zipfile.BadZipFile) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CheckpointImportError(f"{path}: not a readable torch checkpoint ({why})") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def strip_data_parallel(state: dict) -> dict:
    """Remove DataParallel's `module.` prefix when every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def need(state: dict, name: str, source: Path) -> torch.Tensor:
    """Their tensor `name`, or a one-line error naming it."""
    if name not in state:
        raise CheckpointImportError(f"{source}: missing tensor {name!r}")
    return state[name]


# plan builders: prvr prefix, their prefix -> {prvr param: [their params]}

def same(ours: str, theirs: str, params=("weight", "bias")) -> dict[str, list[str]]:
    return {f"{ours}.{p}": [f"{theirs}.{p}"] for p in params}


def stacked(ours: str, theirs: list[str], params=("weight", "bias")) -> dict[str, list[str]]:
    """One prvr linear holding several of theirs by rows (qkv, key_value)."""
    return {f"{ours}.{p}": [f"{t}.{p}" for t in theirs] for p in params}


def projection(ours: str, theirs: str) -> dict[str, list[str]]:
    """Their LinearLayer (LayerNorm, dropout, linear, ReLU) -> prvr InputProjection."""
    return {**same(f"{ours}.net.0", f"{theirs}.LayerNorm"), **same(f"{ours}.net.2", f"{theirs}.net.1")}


def positions(ours: str, theirs: str) -> dict[str, list[str]]:
    """Their TrainablePositionalEncoding -> prvr PositionalEmbedding."""
    return {f"{ours}.embedding.weight": [f"{theirs}.position_embeddings.weight"],
            **same(f"{ours}.norm", f"{theirs}.LayerNorm")}


def bert_attention(ours: str, theirs: str) -> dict[str, list[str]]:
    """Their BertAttention (self.q/k/v, output.dense, output.LayerNorm) -> prvr bert_attention layer."""
    return {**stacked(f"{ours}.attention.qkv", [f"{theirs}.self.{n}" for n in ("query", "key", "value")]),
            **same(f"{ours}.attention.out", f"{theirs}.output.dense"),
            **same(f"{ours}.norm", f"{theirs}.output.LayerNorm")}


def pooling(ours: str, theirs: str) -> dict[str, list[str]]:
    """Their bias-free modular_vector_mapping -> prvr AttentionPooling scorer."""
    return {f"{ours}.score.weight": [f"{theirs}.weight"]}


def assemble(theirs: dict, plan: dict[str, list[str]], expected: dict[str, torch.Size],
             not_used: dict[str, str], source: Path) -> dict[str, torch.Tensor]:
    """prvr state dict from theirs by `plan`; every tensor of theirs used once or listed in
    `not_used` (name -> why), every prvr tensor filled, shapes equal, else a one-line error."""
    missing_plan = sorted(set(expected) - set(plan))
    if missing_plan:
        raise CheckpointImportError(f"{source}: no tensor of theirs maps onto prvr's {missing_plan[0]!r}")
    used: set[str] = set()
    state = {}
    for ours, names in plan.items():
        parts = [need(theirs, name, source) for name in names]
        tensor = torch.cat([p.detach().float() for p in parts], dim=0) if len(parts) > 1 else parts[0].detach().float()
        if tensor.shape != expected[ours]:
            shapes = " + ".join(str(tuple(p.shape)) for p in parts)
            raise CheckpointImportError(f"{source}: tensor {names[0]!r} has shape {shapes}, prvr's {ours!r} "
                               f"needs {tuple(expected[ours])}")
        state[ours] = tensor.clone()
        used.update(names)
    leftover = [k for k in theirs if k not in used and k not in not_used]
    if leftover:
        raise CheckpointImportError(f"{source}: tensor {leftover[0]!r} has no counterpart in prvr's model "
                           f"({len(leftover)} such)")
    return state


def build_config(base: Config | None, release_defaults: dict, from_file: dict, source: Path) -> Config:
    """Full Config: the base (default Config()) overridden by the release's defaults (only when no
    base is given) and then by what their file says; the result passes prvr's config checks."""
    cfg = Config() if base is None else base
    overrides = _deep_merge(release_defaults if base is None else {}, from_file)
    try:
        return merge(cfg, overrides, f"{source} (imported settings)")
    except PrvrError as err:
        raise CheckpointImportError(str(err).splitlines()[0]) from None


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_model_file(out: Path, cfg: Config, state: dict, seed, imported_from: dict) -> None:
    """prvr's model.pt (keys config, model, seed) plus `imported_from`, written atomically."""
    from_dict(to_dict(cfg), str(out))  # the saved config reads back
    save_checkpoint(out, {"config": to_dict(cfg), "model": state, "seed": seed, "imported_from": imported_from})
