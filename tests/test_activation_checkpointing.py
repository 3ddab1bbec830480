"""train.activation_checkpointing: the MSC models' encoder layers recompute their activations in the
backward pass (prvr.models.attention.checkpointed); the loss and every gradient are the ones without it
(dropout included: the RNG state is replayed), the layers' activations are not kept, training gives the
same weights, and a model without such layers stops with one ConfigError line."""
import numpy as np
import pytest
import torch
from torch import nn

from prvr.config import Config, merge
from prvr.data.dataset import collate_videos
from prvr.errors import ConfigError
from prvr.models import attention, factory, parallel_gmm
from prvr.training import trainer
from test_trainer import TINY  # `data`: the learnable training set of tests/conftest.py

MODEL = {"input_dim": 8, "hidden": 16, "heads": 2, "frame_tokens": 6, "clip_tokens": 3,
         "dropout": 0.2, "input_dropout": 0.2}
FULL_METHOD = {"tcpl": {"enabled": True}, "cbva": {"enabled": True, "adaptive": {"enabled": True,
                                                                                  "segment_choices": [3, 2]}}}
CASES = {"gmmformer_v2": ({"name": "gmmformer_v2"}, {}),
         "gmmformer_v2_full_method": ({"name": "gmmformer_v2", "merging": {"enabled": True, "stages": [4, 3]}},
                                      FULL_METHOD),
         "gmmformer_v2_lite": ({"name": "gmmformer_v2_lite"}, {})}


def _batch(seed=0, videos=4):
    rng = np.random.default_rng(seed)
    items = [{"vid": f"v{b}", "frames": rng.normal(size=(6, 8)).astype(np.float32),
              "queries": [rng.normal(size=(int(rng.integers(2, 6)), 8)).astype(np.float32) for _ in range(2)]}
             for b in range(videos)]
    return collate_videos(items)


def _step(case: str, checkpointing: bool, monkeypatch):
    """Loss terms, gradients, layer-forward calls and bytes autograd saved outside checkpointed regions
    for one training step of a freshly built model (same seeds either way)."""
    model_cfg, loss_cfg = CASES[case]
    cfg = merge(Config(), {"model": {**MODEL, **model_cfg}, "loss": loss_cfg,
                           "train": {"activation_checkpointing": checkpointing}})
    calls = []
    for cls in (parallel_gmm.WindowedLayer, attention.TransformerLayer):
        real = cls._forward
        monkeypatch.setattr(cls, "_forward", lambda self, *a, real=real: calls.append(1) or real(self, *a))
    torch.manual_seed(0)
    model, loss_fn, _, _ = trainer._build(cfg, n_train_videos=4)
    model.train()
    batch = _batch()
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    torch.manual_seed(1)  # the dropout masks
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(frame_feats=batch["frame_feats"], query_feats=batch["query_feats"], query_mask=batch["query_mask"])
        terms = loss_fn(**out, query_to_video=batch["query_to_video"], query_eot=batch["query_eot"],
                        frame_feats=batch["frame_feats"], epoch=0, generator=torch.Generator().manual_seed(2))
    forward_calls = len(calls)
    sum(terms.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in terms.items()}, grads, forward_calls, len(calls), sum(saved)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_loss_and_gradients_with_dropout(case, monkeypatch):
    terms, grads, fwd, total, saved = _step(case, False, monkeypatch)
    c_terms, c_grads, c_fwd, c_total, c_saved = _step(case, True, monkeypatch)
    assert terms.keys() == c_terms.keys() and len(terms) >= (4 if case.endswith("method") else 2)
    for name in terms:
        torch.testing.assert_close(c_terms[name], terms[name], rtol=1e-6, atol=1e-7, msg=name)
    assert grads.keys() == c_grads.keys() and len(grads) > 20
    for name in grads:  # float32 rounding at most (the gradient sums of a shared input may reorder)
        torch.testing.assert_close(c_grads[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    assert total == fwd and fwd > 0  # without: each layer runs once
    layers = 2 if case == "gmmformer_v2_lite" else 16  # its two video layers; 2 blocks x 8 parallel layers
    assert c_total == c_fwd + layers  # with: each of them runs again in the backward pass
    assert c_saved < 0.6 * saved  # their activations were not kept


def test_dropout_is_really_on_in_these_steps(monkeypatch):
    """The equality above means something: another dropout seed gives another loss."""
    cfg = merge(Config(), {"model": {**MODEL, "name": "gmmformer_v2"}})
    torch.manual_seed(0)
    model, _, _, _ = trainer._build(cfg, n_train_videos=4)
    model.train()
    batch = _batch()
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(model(frame_feats=batch["frame_feats"], query_feats=batch["query_feats"],
                          query_mask=batch["query_mask"])["frame_tokens"].detach())
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])


def test_training_gives_the_same_weights(tmp_path, data):  # noqa: F811
    cfg = merge(Config(), {**TINY, "model": {**TINY["model"], "dropout": 0.2},
                           "train": {**TINY["train"], "epochs": 2}})
    plain = trainer.train(cfg, 3, data, tmp_path / "plain")
    recomputed = trainer.train(merge(cfg, {"train": {"activation_checkpointing": True}}), 3, data, tmp_path / "ckpt")
    assert plain["best_epoch"] == recomputed["best_epoch"]
    assert recomputed["best_val_sumr"] == pytest.approx(plain["best_val_sumr"], abs=1e-9)
    a = torch.load(tmp_path / "plain/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "ckpt/checkpoints/last.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


class NoLayers(nn.Module):
    """A model built from layers that do not support recomputation (like the baselines' own)."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.input_dim, cfg.hidden)


def test_a_model_without_support_stops_with_one_line(monkeypatch):
    monkeypatch.setitem(factory.MODEL_BUILDERS, "ms_sl", NoLayers)
    settings = {"model": {**MODEL, "name": "ms_sl"}, "train": {"activation_checkpointing": True}}
    with pytest.raises(ConfigError, match=r"train.activation_checkpointing: supported by the MSC models "
                                          r"\(gmmformer_v2, gmmformer_v2_lite\), not model.name=ms_sl"):
        merge(Config(), settings)  # the config check stops it at Snakemake's start
    cfg = merge(Config(), settings, check_values=False)  # and the trainer too, for a config built otherwise
    with pytest.raises(ConfigError) as info:
        trainer._build(cfg, n_train_videos=4)
    assert str(info.value) == ("train.activation_checkpointing: model 'ms_sl' has no layer that can recompute "
                               "its activations (gmmformer_v2 and gmmformer_v2_lite have); set it to false")
    assert info.value.key == "train.activation_checkpointing"
    assert attention.enable_activation_checkpointing(NoLayers(cfg.model)) == 0


def test_no_recomputation_without_autograd_or_when_off():
    """Evaluation (no_grad) and a model where it was never turned on run each layer once."""
    layer = attention.TransformerLayer(attention.MultiHeadAttention(8, 2, 0.0), 8, 0.0)
    x = torch.randn(2, 5, 8, requires_grad=True)
    calls = []
    real = layer._forward
    layer._forward = lambda *a: calls.append(1) or real(*a)
    layer(x).sum().backward()
    assert len(calls) == 1
    assert attention.enable_activation_checkpointing(layer) == 1
    with torch.no_grad():
        layer(x)
    assert len(calls) == 2
    layer(x).sum().backward()
    assert len(calls) == 4
