"""Tests of the released GMMFormer-v2 architecture (prvr.models.gmmformer_v2, parallel_gmm):
the Gaussian window grid, the fusion softmax at its temperature, input normalisation, the
parameter count at the TVR shape, shared fusion token, shapes, gradients and input checks.
Run: .venv/bin/python -m pytest tests/test_gmmformer_v2.py -q
"""
import math
from dataclasses import replace

import pytest
import torch

from prvr.config import ConfigError, MergingConfig, ModelConfig, from_dict
from prvr.losses import create_loss
from prvr.config_losses import LossConfig
from prvr.models import GMMFormerV2, ModelInputError, create_model
from prvr.models.common import l2_normalise
from prvr.models.parallel_gmm import ParallelGMMBlock, fuse_layers, gaussian_window

CFG = ModelConfig(input_dim=12, hidden=16, heads=2, frame_tokens=8, clip_tokens=4,
                  gauss_widths=(0.5, 1.0, 5.0), max_query_len=10,
                  merging=MergingConfig(enabled=True, stages=(6, 4)))


def inputs(n_videos=3, n_queries=4, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = 3 * torch.randn(n_videos, CFG.frame_tokens, CFG.input_dim, generator=g) + 1
    queries = 2 * torch.randn(n_queries, length, CFG.input_dim, generator=g)
    mask = torch.arange(length)[None, :] < torch.tensor([6, 1, 3, 4])[:n_queries, None]
    return frames, queries, mask


def test_gaussian_window_grid_by_hand():
    # width 9 -> sigma 1; query centres i/4 = 0, .25, .5, .75; key grid j/3 = 0, 1/3, 2/3, 1
    g = gaussian_window(4, 9.0)
    assert g.shape == (4, 4)
    assert g[0, 0] == 1.0 and math.isclose(g[0, 3], math.exp(-0.5), rel_tol=1e-6)
    # row 1: nearest key is 1/3 (distance 1/12); key 0 is 1/4 away
    assert g[1, 1] == 1.0
    assert math.isclose(g[1, 0], math.exp(-(1 / 16 - 1 / 144) / 2), rel_tol=1e-6)
    assert math.isclose(g[3, 0], math.exp(-(0.75 ** 2 - (2 / 3 - 0.75) ** 2) / 2), rel_tol=1e-6)
    assert torch.equal(g.max(dim=1).values, torch.ones(4))


def test_gaussian_window_narrow_width_stays_finite():
    # width 0.1 over 2 tokens: exp(-1012) underflows to 0/0 in the plain formula
    g = gaussian_window(2, 0.1)
    assert torch.isfinite(g).all() and torch.equal(g.max(dim=1).values, torch.ones(2))
    assert g[0, 1] == 0.0  # centre 0: key 1 is a whole video away
    assert torch.equal(g[1], torch.ones(2))  # centre 0.5 is equally far from keys 0 and 1


def test_window_multiplies_the_scaled_logits():
    block = ParallelGMMBlock(hidden=4, heads=1, dropout=0.0, widths=(1.0,), n_tokens=3,
                             temperature=0.09).eval()
    attention = block.layers[1].attention
    x = torch.randn(1, 3, 4)
    q = attention.query(x)
    k, v = attention.key_value(x).chunk(2, dim=-1)
    logits = (q @ k.transpose(1, 2)) / 2.0 * gaussian_window(3, 1.0)  # d = 4 -> sqrt 2
    expected = logits.softmax(-1) @ v
    assert torch.allclose(attention(x, x), expected, atol=1e-6)


def test_fusion_softmax_at_temperature_by_hand():
    outs = torch.stack([torch.zeros(1, 1, 2), torch.ones(1, 1, 2)])  # (K=2, B=1, N=1, H=2)
    logits = torch.tensor([0.0, 0.09]).view(2, 1, 1)
    fused = fuse_layers(logits, outs, 0.09)  # softmax([0, 1]) -> e / (1 + e) on the ones
    assert torch.allclose(fused, torch.full((1, 1, 2), math.e / (1 + math.e)))
    hot = fuse_layers(logits, outs, 0.009)  # softmax([0, 10])
    assert torch.allclose(hot, torch.full((1, 1, 2), 1 / (1 + math.exp(-10))))


def test_block_temperature_moves_between_mean_and_one_layer():
    torch.manual_seed(0)
    block = ParallelGMMBlock(hidden=8, heads=2, dropout=0.0, widths=(0.5, 5.0), n_tokens=5,
                             temperature=1e9).eval()
    token, x = torch.randn(1, 1, 8), torch.randn(2, 5, 8)
    outs = torch.stack([layer(x) for layer in block.layers])  # (3, 2, 5, 8)
    assert torch.allclose(block(x, token), outs.mean(dim=0), atol=1e-5)
    with pytest.raises(ValueError, match="built for 5 tokens"):
        block(torch.randn(2, 4, 8), token)


def test_inputs_are_l2_normalised_and_merging_uses_raw_features():
    model = create_model(CFG, seed=0).eval()
    frames, queries, mask = inputs()
    out = model(frames, queries, mask)
    scaled = model(frames * 5, queries * 7, mask)  # l2 inputs: a scale does not matter
    for key in ("query", "frame_tokens", "clip_tokens"):
        assert torch.allclose(out[key], scaled[key], atol=1e-4)
    assert torch.allclose(out["merged_inputs"].norm(dim=-1), torch.ones(3, 4), atol=1e-4)
    raw = create_model(replace(CFG, input_norm="none"), seed=0).eval()
    raw_merged = raw.encode_videos(frames)["merged_inputs"]
    assert raw_merged.norm(dim=-1).gt(2).all()  # "none": the merged raw features as they are
    assert torch.allclose(l2_normalise(torch.tensor([[3.0, 4.0]])), torch.tensor([[3, 4]]) / 5.00001)


def test_shapes_shared_token_and_every_used_parameter_learns():
    model = create_model(CFG, seed=1).train()
    frames, queries, mask = inputs()
    out = model(frames, queries, mask)
    assert out["query"].shape == (4, 16) and out["frame_tokens"].shape == (3, 8, 16)
    assert out["clip_tokens"].shape == (3, 4, 16) and out["clip_sizes"].sum(1).eq(8).all()
    assert len(model.clip_branch.block.layers) == len(model.frame_branch.block.layers) == 4
    (out["query"].sum() + out["frame_tokens"].pow(2).sum() + out["clip_tokens"].pow(2).sum()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    rows = model.clip_branch.position.embedding.weight.grad.abs().sum(dim=1)
    assert rows[:4].gt(0).all() and rows[4:].eq(0).all()  # authors' table: clip_tokens rows used
    assert model.weight_token.grad.abs().sum() > 0  # one token, used by both blocks


def test_no_weight_decay_names_the_input_layernorms():
    names = create_model(CFG, seed=0).no_weight_decay()
    assert "frame_branch.project.net.0.weight" in names and "query_encoder.position.norm.weight" in names
    assert not any("block" in n for n in names)  # the parallel layers' norms are decayed (authors)
    assert len(names) == 12  # 3 projections + 3 positional embeddings, weight and bias


def test_paper_shape_parameter_count_is_the_authors():
    cfg = ModelConfig(input_dim=768, hidden=384, heads=4, frame_tokens=128, clip_tokens=32,
                      merging=MergingConfig(enabled=True, stages=(80, 52, 32)))
    model = GMMFormerV2(cfg)
    head = create_loss(from_dict({"cbva": {"enabled": True}}, cls=LossConfig), hidden=384)
    n_model = sum(p.numel() for p in model.parameters())
    n_head = sum(p.numel() for p in head.parameters())
    assert n_model == 30_512_800 and n_model + n_head == 30_660_640  # released MSC_PRVR_Net


def test_input_checks_name_the_problem():
    model = create_model(CFG, seed=0)
    frames, queries, mask = inputs()
    with pytest.raises(ModelInputError, match="expected 8"):
        model.encode_videos(frames[:, :6])  # the fusion is built for exactly frame_tokens
    with pytest.raises(ModelInputError, match="max_query_len"):
        model.encode_queries(torch.randn(1, 11, 12), torch.ones(1, 11, dtype=torch.bool))
    with pytest.raises(ConfigError, match="model.name"):
        from_dict({"model": {"name": "gmmformer"}})
    with pytest.raises(ValueError, match="fusion_temperature"):
        create_model(replace(CFG, fusion_temperature=0.0))
    with pytest.raises(ValueError, match="input_dropout"):
        create_model(replace(CFG, input_dropout=1.0))


def test_folded_token_attention_equals_the_plain_cross_attention():
    torch.manual_seed(0)
    layer = ParallelGMMBlock(hidden=8, heads=2, dropout=0.0, widths=(), n_tokens=5,
                             temperature=0.09).summary.eval()
    with torch.no_grad():
        layer.attention.key_value.bias.normal_()  # non-zero biases: both must be handled
        layer.attention.query.bias.normal_()
    token, keys = torch.randn(1, 1, 8), torch.randn(6, 5, 8)
    plain = layer(token.expand(6, 1, 8), keys=keys)  # (6, 1, 8)
    assert torch.allclose(layer.forward_from_token(token, keys), plain, atol=1e-5)


@pytest.mark.parametrize("inference", [False, True], ids=["training_forward", "inference_forward"])
def test_the_fusion_really_mixes_the_layers(inference):
    """Guard: a third-party copy of this model once replaced the weighted sum by a plain mean of the
    layers and lost 4.7 SumR on Charades. The block's output is the softmax-weighted sum of its layers'
    outputs computed here by hand, and it moves with the fusion token."""
    torch.manual_seed(0)
    block = ParallelGMMBlock(hidden=16, heads=2, dropout=0.0, widths=(0.3, 0.7), n_tokens=5, temperature=0.09)
    block.train(not inference)
    x, token = torch.randn(3, 5, 16), torch.randn(1, 1, 16)
    with torch.set_grad_enabled(not inference):
        got = block(x, token)  # (B, N, H)
        outs = torch.stack([layer(x) for layer in block.layers])  # (K, B, N, H)
        summaries = torch.stack([block.summary.forward_from_token(token, out)[:, 0] for out in outs])  # (K, B, H)
        logits = block.fusion_out(torch.relu(block.fusion_hidden(summaries)))  # (K, B, N)
        weights = torch.exp(logits / 0.09) / torch.exp(logits / 0.09).sum(dim=0, keepdim=True)
        by_hand = sum(weights[k, ..., None] * outs[k] for k in range(3))  # (B, N, H)
        torch.testing.assert_close(got, by_hand, rtol=1e-4, atol=1e-5)
        assert (got - outs.mean(dim=0)).abs().max() > 1e-3  # not the plain mean of the layers
        assert (block(x, token + 1.0) - got).abs().max() > 1e-4  # the token steers the mixture
