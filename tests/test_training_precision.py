"""train.precision: the forward runs at the chosen precision, the losses and the weights stay float32,
bfloat16 runs are deterministic, float32 is the unchanged step, bad values get one line."""

import pytest
import torch

from prvr.config import Config, merge
from prvr.config_checks import problems
from prvr.config_sources import ablation_config
from prvr.errors import ConfigError
from prvr.losses import create_loss
from prvr.models import create_model
from prvr.training.precision import forward_and_losses, step_precision
from prvr.training.trainer import train

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = {"model": {"input_dim": 8, "hidden": 16, "heads": 2, "frame_tokens": 6, "clip_tokens": 3, "dropout": 0.0,
                  "merging": {"stages": [5, 4, 3]}},
        "loss": {"cbva": {"adaptive": {"segment_choices": [3, 2]}}},
        "train": {"epochs": 2, "batch_size": 4, "early_stop": 10, "num_threads": 1}}


def _full(**train) -> Config:
    """The full method (adaptive.yaml) at a tiny shape."""
    base = merge(Config(), {**TINY, "train": {**TINY["train"], **train}})
    return ablation_config(base, REPO / "config/ablations/adaptive.yaml")


def _batch(seed=0, videos=4, queries=8, length=5, dim=8, frames=6) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(length)[None] < torch.randint(2, length + 1, (queries,), generator=g)[:, None]  # (Q, L)
    feats = torch.randn(queries, length, dim, generator=g) * mask[..., None]
    return {"frame_feats": torch.randn(videos, frames, dim, generator=g), "query_feats": feats, "query_mask": mask,
            "query_to_video": torch.arange(queries) % videos, "query_eot": feats[:, 0]}


def _parts(cfg):
    torch.manual_seed(0)
    model = create_model(cfg.model).train()
    return model, create_loss(cfg.loss, hidden=cfg.model.hidden, model_name=cfg.model.name)


def test_bfloat16_forward_float32_losses_and_weights():
    cfg = _full()
    model, loss_fn = _parts(cfg)
    seen = {"linear": set(), "loss": set()}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, i, o: seen["linear"].add(o.dtype))
    real_forward = loss_fn.forward

    def recording(**kwargs):
        seen["loss"] |= {v.dtype for v in kwargs.values() if torch.is_tensor(v) and v.is_floating_point()}
        return real_forward(**kwargs)
    loss_fn.forward = recording
    terms = forward_and_losses(model, loss_fn, _batch(), "bfloat16", "cpu", epoch=3,
                               generator=torch.Generator().manual_seed(0))
    assert seen["linear"] == {torch.bfloat16}
    assert seen["loss"] == {torch.float32}
    assert {t.dtype for t in terms.values()} == {torch.float32} and len(terms) >= 3
    sum(terms.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_bfloat16_terms_close_to_float32_and_float32_is_the_plain_step():
    cfg = _full()
    model, loss_fn = _parts(cfg)
    batch, kwargs = _batch(1), {"epoch": 3}
    torch.manual_seed(5)
    fp32 = forward_and_losses(model, loss_fn, batch, "float32", "cpu", generator=torch.Generator().manual_seed(0), **kwargs)
    torch.manual_seed(5)
    out = model(frame_feats=batch["frame_feats"], query_feats=batch["query_feats"], query_mask=batch["query_mask"])
    plain = loss_fn(**out, **{k: v for k, v in batch.items() if k not in out}, generator=torch.Generator().manual_seed(0),
                    **kwargs)
    assert fp32.keys() == plain.keys() and all(torch.equal(fp32[k], plain[k]) for k in fp32)
    torch.manual_seed(5)
    bf16 = forward_and_losses(model, loss_fn, batch, "bfloat16", "cpu", generator=torch.Generator().manual_seed(0), **kwargs)
    for name in fp32:
        assert abs(float(bf16[name].detach()) - float(fp32[name].detach())) <= 0.02 * abs(float(fp32[name].detach())) + 0.005, name
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32)  # it did run in another precision


def test_bfloat16_training_is_deterministic_and_differs_from_float32(tmp_path, data):
    a = train(_full(precision="bfloat16"), 3, data, tmp_path / "a")
    b = train(_full(precision="bfloat16"), 3, data, tmp_path / "b")
    c = train(_full(), 3, data, tmp_path / "c")
    wa, wb, wc = (torch.load(tmp_path / f"{r}/model.pt", weights_only=False) for r in "abc")
    assert a == b and all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    assert all(v.dtype == torch.float32 for v in wa["model"].values() if v.is_floating_point())
    assert wa["config"]["train"]["precision"] == "bfloat16"
    assert any(not torch.equal(wa["model"][k], wc["model"][k]) for k in wa["model"])


def test_bad_precision_values_get_one_line():
    found = dict(problems(merge(Config(), {"train": {"precision": "tf32"}}, check_values=False)))
    assert "tf32 needs a cuda" in found["train.precision"]
    with pytest.raises(ConfigError, match="tf32 needs a cuda"):
        merge(Config(), {"train": {"precision": "tf32"}})
    with pytest.raises(ConfigError, match="train.precision"):
        merge(Config(), {"train": {"precision": "float16"}})
    with pytest.raises(ConfigError, match="tf32 needs a cuda"):
        with step_precision("tf32", "cpu"):
            pass
