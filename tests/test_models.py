"""Tests of the lighter GMMFormer-v2-style model (gmmformer_v2_lite) (prvr.models): shapes, padding invariance, determinism,
clip pooling, token merging in the clip branch, log(size) attention, Gaussian windows and input
checks.
Run: .venv/bin/python -m pytest tests/test_models.py -q
"""
from dataclasses import replace

import pytest
import torch

from prvr.config import MergingConfig, ModelConfig
from prvr.models import (GMMFormerV2Lite, ModelInputError, PooledTokens, create_model,
                         uniform_clip_pool, uniform_segments)
from prvr.models.attention import (GaussianMixtureAttention, MultiHeadAttention,
                                   gaussian_log_prior, token_centres)
from prvr.models.common import MergingClipPooler, l2_normalise
from prvr.models.token_merging import MergingError, merge_stages

CFG = ModelConfig(name="gmmformer_v2_lite", input_dim=16, hidden=32, heads=4, frame_tokens=12,
                  clip_tokens=4, gauss_widths=(0.5, 1.0, 2.0), dropout=0.1, max_query_len=10)
MERGE_CFG = replace(CFG, merging=MergingConfig(enabled=True, stages=(8, 6, 4)))


def make_inputs(n_videos=3, n_queries=5, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n_videos, CFG.frame_tokens, CFG.input_dim, generator=g)
    queries = torch.randn(n_queries, length, CFG.input_dim, generator=g)
    lengths = torch.randint(1, length + 1, (n_queries,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]  # (Q, L)
    return frames, queries, mask


def dead_parameters(model):
    """Parameters without a gradient (every parameter of the model must be able to learn)."""
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_output_shapes_and_keys():
    model = create_model(CFG, seed=0).eval()
    frames, queries, mask = make_inputs()
    out = model(frames, queries, mask)
    assert out["query"].shape == (5, 32)
    assert out["frame_tokens"].shape == (3, 12, 32)
    assert out["clip_tokens"].shape == (3, 4, 32)
    assert out["clip_sizes"].shape == (3, 4) and out["frame_to_clip"].shape == (3, 12)
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    videos = model.encode_videos(frames)
    assert torch.allclose(videos["clip_tokens"], out["clip_tokens"])
    assert torch.allclose(model.encode_queries(queries, mask)["query"], out["query"])


def test_fewer_frames_than_positions_is_accepted():
    model = create_model(CFG, seed=0).eval()
    out = model.encode_videos(torch.randn(2, 6, CFG.input_dim))
    assert out["frame_tokens"].shape == (2, 6, 32) and out["clip_tokens"].shape == (2, 4, 32)


def test_query_padding_does_not_change_query_vector():
    model = create_model(CFG, seed=1).eval()
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(1, 4, CFG.input_dim, generator=g)
    short = model.encode_queries(tokens, torch.ones(1, 4, dtype=torch.bool))["query"]
    garbage = 100 * torch.randn(1, 5, CFG.input_dim, generator=g)
    padded = torch.cat([tokens, garbage], dim=1)  # (1, 9, D)
    mask = torch.arange(9)[None, :] < 4
    long = model.encode_queries(padded, mask)["query"]
    assert torch.allclose(short, long, atol=1e-5)


def test_query_batch_composition_does_not_matter():
    model = create_model(CFG, seed=1).eval()
    frames, queries, mask = make_inputs(n_queries=6)
    together = model.encode_queries(queries, mask)["query"]
    alone = torch.cat([model.encode_queries(queries[i:i + 1], mask[i:i + 1])["query"]
                       for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_same_seed_same_model_and_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = create_model(CFG, seed=7).eval()
    assert torch.equal(torch.rand(3), expected)  # building with a seed leaves the global RNG alone
    b = create_model(CFG, seed=7).eval()
    c = create_model(CFG, seed=8).eval()
    frames, queries, mask = make_inputs()
    out_a, out_b, out_c = (m(frames, queries, mask) for m in (a, b, c))
    for key in ("query", "frame_tokens", "clip_tokens"):
        assert torch.equal(out_a[key], out_b[key])
    assert not torch.allclose(out_a["query"], out_c["query"])


def test_train_mode_dropout_is_seeded_and_all_parameters_learn():
    frames, queries, mask = make_inputs()
    outs = []
    for _ in range(2):
        model = create_model(CFG, seed=3).train()
        torch.manual_seed(11)
        out = model(frames, queries, mask)
        outs.append(out["query"].detach())
        (out["query"].sum() + out["frame_tokens"].pow(2).sum() + out["clip_tokens"].pow(2).sum()
         ).backward()
    assert torch.equal(outs[0], outs[1])
    assert dead_parameters(model) == []


def test_uniform_clip_pool_divisible():
    feats = torch.arange(8, dtype=torch.float32).view(1, 8, 1).repeat(2, 1, 3)  # (2, 8, 3)
    pooled = uniform_clip_pool(feats, 4)
    assert isinstance(pooled, PooledTokens)
    assert torch.allclose(pooled.features[0, :, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]))
    assert torch.equal(pooled.sizes, torch.full((2, 4), 2.0))
    assert pooled.frame_to_token[1].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_uniform_clip_pool_uneven_and_more_clips_than_frames():
    feats = torch.arange(10, dtype=torch.float32).view(1, 10, 1)
    pooled = uniform_clip_pool(feats, 4)  # segments [0,2) [2,5) [5,7) [7,10)
    assert pooled.sizes[0].tolist() == [2, 3, 2, 3]
    assert torch.allclose(pooled.features[0, :, 0], torch.tensor([0.5, 3.0, 5.5, 8.0]))
    few = uniform_clip_pool(torch.arange(3, dtype=torch.float32).view(1, 3, 1), 5)
    assert few.features[0, :, 0].tolist() == [0, 0, 1, 1, 2]  # frames repeated, none empty
    assert few.frame_to_token[0].tolist() == [0, 2, 4]
    member = uniform_segments(7, 3)
    assert member.sum().item() == 7 and (member.sum(dim=0) == 1).all()  # a partition


def test_model_uses_a_custom_clip_pooler():
    calls = []

    def first_frames(frame_feats, n_tokens):
        calls.append(n_tokens)
        b = frame_feats.shape[0]
        sizes = torch.tensor([[1.0, 1.0, 2.0, 8.0]]).expand(b, -1)
        labels = torch.zeros(b, frame_feats.shape[1], dtype=torch.long)
        return PooledTokens(frame_feats[:, :n_tokens], sizes, labels)

    torch.manual_seed(0)
    model = GMMFormerV2Lite(CFG, clip_pooler=first_frames).eval()
    out = model.encode_videos(torch.randn(2, 12, CFG.input_dim))
    assert calls == [4] and out["clip_sizes"][0].tolist() == [1, 1, 2, 8]
    assert out["clip_tokens"].shape == (2, 4, 32)


def test_gaussian_prior_values():
    centres = torch.tensor([0.125, 0.375, 0.625, 0.875])
    prior = gaussian_log_prior(centres, (0.9, 1.8))  # sigma 0.1 and 0.2
    assert prior.shape == (2, 4, 4)
    assert prior[0, 0, 1].item() == pytest.approx(-(0.25 ** 2) / (2 * 0.1 ** 2))  # -3.125
    assert prior[1, 3, 0].item() == pytest.approx(-(0.75 ** 2) / (2 * 0.2 ** 2))
    assert torch.all(prior.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.allclose(token_centres(torch.tensor([[1.0, 3.0]])), torch.tensor([[1 / 8, 5 / 8]]))


def test_narrow_window_attends_locally():
    torch.manual_seed(0)
    attn = GaussianMixtureAttention(hidden=8, heads=2, widths=(0.05,), dropout=0.0)
    bias = attn.window_bias(16, None, "cpu", torch.float32)  # (1, windows * heads, 16, 16)
    assert bias.shape == (1, 4, 16, 16)
    probs = torch.softmax(bias[0, 0], dim=-1)  # prior alone, narrow window
    assert probs.diagonal().min() > 0.99
    assert torch.equal(bias[0, 2:], torch.zeros(2, 16, 16))  # the unconstrained window


@pytest.mark.parametrize("frames, message", [
    (torch.randn(2, 12), "frame_feats"),
    (torch.randn(2, 12, 5), "frame_feats"),
    (torch.randn(2, 13, 16), "model.frame_tokens"),
])
def test_bad_video_input(frames, message):
    with pytest.raises(ModelInputError, match=message):
        create_model(CFG, seed=0).encode_videos(frames)


def test_bad_query_input():
    model = create_model(CFG, seed=0)
    queries = torch.randn(2, 4, 16)
    with pytest.raises(ModelInputError, match="query_mask"):
        model.encode_queries(queries, torch.ones(2, 4))  # not bool
    with pytest.raises(ModelInputError, match="query 1 has no valid token"):
        model.encode_queries(queries, torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ModelInputError, match="max_query_len"):
        model.encode_queries(torch.randn(1, 11, 16), torch.ones(1, 11, dtype=torch.bool))


def test_bad_config():
    from dataclasses import replace
    with pytest.raises(ValueError, match="model.name"):
        create_model(replace(CFG, name="nope"))
    with pytest.raises(ValueError, match="multiple of model.heads"):
        create_model(replace(CFG, hidden=30))
    with pytest.raises(ValueError, match="gauss_widths"):
        create_model(replace(CFG, gauss_widths=(1.0, -1.0)))


def test_parameter_count_grows_with_windows():
    from dataclasses import replace
    small = sum(p.numel() for p in create_model(replace(CFG, gauss_widths=(1.0,))).parameters())
    large = sum(p.numel() for p in create_model(CFG).parameters())
    qkv_per_window = 3 * (CFG.hidden * CFG.hidden + CFG.hidden)
    assert large - small == 2 * 2 * qkv_per_window  # 2 branches x 2 extra windows


def test_segment_keys_default_to_the_clip_branch():
    model = create_model(CFG, seed=0).eval()
    frames, queries, mask = make_inputs()
    out = model(frames, queries, mask)
    assert torch.equal(out["segment_tokens"], out["clip_tokens"])
    assert torch.equal(out["frame_to_segment"], out["frame_to_clip"])
    assert out["segment_mask"].dtype == torch.bool and out["segment_mask"].all()
    assert out["segment_mask"].shape == (3, 4)
    assert torch.allclose(out["merged_inputs"], l2_normalise(uniform_clip_pool(frames, 4).features))


def test_merging_model_uses_merged_tokens():
    model = create_model(MERGE_CFG, seed=0).eval()
    assert isinstance(model.clip_pooler, MergingClipPooler)
    frames, queries, mask = make_inputs(n_videos=4)
    out = model(frames, queries, mask)
    expected = merge_stages(frames, (8, 6, 4))
    assert out["clip_tokens"].shape == (4, 4, 32) and out["segment_tokens"].shape == (4, 4, 32)
    assert torch.allclose(out["merged_inputs"], l2_normalise(expected.features))  # merged raw, then normalised
    assert torch.equal(out["clip_sizes"], expected.sizes)
    assert torch.equal(out["frame_to_clip"], expected.frame_to_token)
    assert torch.equal(out["frame_to_segment"], out["frame_to_clip"])
    assert (out["clip_sizes"].sum(dim=1) == 12).all()
    assert not (out["clip_sizes"] == 3).all()  # not the uniform pooling
    assert (out["frame_to_clip"].diff(dim=1) >= 0).all()
    short = model.encode_videos(frames[:, :3])  # fewer frames than the stages: fewer tokens
    assert short["clip_tokens"].shape == (4, 3, 32) and (short["clip_sizes"] == 1).all()


def test_merging_model_gradients_reach_parameters_and_inputs():
    model = create_model(MERGE_CFG, seed=2).train()
    frames, queries, mask = make_inputs()
    frames.requires_grad_()
    out = model(frames, queries, mask)
    (out["query"].sum() + out["frame_tokens"].pow(2).sum() + out["clip_tokens"].pow(2).sum()
     ).backward()
    assert dead_parameters(model) == []
    frames.grad = None
    model.encode_videos(frames)["clip_tokens"].pow(2).sum().backward()  # only through merging
    assert frames.grad.abs().sum(dim=-1).gt(0).all()


def test_clip_branch_attention_receives_the_token_sizes():
    model = create_model(MERGE_CFG, seed=0).eval()
    attention = model.clip_branch.block.attention
    seen = []
    original = attention.forward

    def spy(x, key_padding_mask=None, sizes=None):
        seen.append(sizes)
        return original(x, key_padding_mask=key_padding_mask, sizes=sizes)

    attention.forward = spy
    out = model.encode_videos(make_inputs()[0])
    assert len(seen) == 1 and torch.equal(seen[0], out["clip_sizes"])


def test_log_size_term_in_attention_logits():
    torch.manual_seed(0)
    attn = MultiHeadAttention(hidden=8, heads=2, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    sizes = torch.tensor([[1.0, 4.0, 1.0, 2.0, 1.0], [3.0, 1.0, 1.0, 1.0, 6.0]])
    q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    logits = q @ k.transpose(-1, -2) / 2.0 + sizes.log()[:, None, None, :]  # sqrt(d) = 2
    expected = attn.out((logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    assert torch.allclose(attn(x, sizes=sizes), expected, atol=1e-6)
    assert not torch.allclose(attn(x, sizes=sizes), attn(x), atol=1e-4)
    assert torch.allclose(attn(x, sizes=torch.full((2, 5), 3.0)), attn(x), atol=1e-6)


def test_log_size_changes_gaussian_attention_only_when_sizes_differ():
    torch.manual_seed(0)
    # a very wide window: the Gaussian prior is ~0, so only log(size) can change the output
    attn = GaussianMixtureAttention(hidden=8, heads=2, widths=(1e6,), dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    equal = attn(x, sizes=torch.full((2, 5), 2.0))
    assert torch.allclose(equal, attn(x), atol=1e-6)
    unequal = attn(x, sizes=torch.tensor([[1.0, 1.0, 1.0, 1.0, 6.0]]).repeat(2, 1))
    assert not torch.allclose(unequal, attn(x), atol=1e-4)


@pytest.mark.parametrize("stages, message", [((8, 6, 3), "end at model.clip_tokens"),
                                             ((6, 8, 4), "strictly decrease"),
                                             ((16, 8, 4), "model.frame_tokens")])
def test_bad_merging_stages(stages, message):
    cfg = replace(CFG, merging=MergingConfig(enabled=True, stages=stages))
    with pytest.raises(MergingError, match=message):
        create_model(cfg)
    create_model(replace(cfg, merging=MergingConfig(enabled=False, stages=stages)))  # unused: ok
