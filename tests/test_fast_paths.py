"""The fast implementations (one-matmul max-over-tokens scores with a sparse backward, fused GMM
attention, packed query encoder) against straightforward references on small shapes:
values and gradients must agree to float tolerance.

    .venv/bin/python -m pytest tests/test_fast_paths.py -q
"""
from __future__ import annotations

import pytest
import torch

from prvr.evaluation import scoring
from prvr.evaluation.scoring import branch_dot_and_cosine, branch_scores, reference_branch_scores


def _inputs(seed=0, q=7, b=5, n=6, h=8):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(q, h, generator=g, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(b, n, h, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(q, b, generator=g, dtype=torch.float64)
    return query, tokens, weights


def _value_and_grads(fn, query, tokens, weights):
    value = fn(query, tokens)
    gq, gt = torch.autograd.grad((value * weights).sum(), (query, tokens))
    return value.detach(), gq, gt


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_branch_scores_match_reference_values_and_gradients(normalize, masked, monkeypatch):
    query, tokens, weights = _inputs()
    mask = None
    if masked:
        mask = torch.ones(5, 6, dtype=torch.bool)
        mask[1, :4] = False
        mask[3, 5] = False
    def fast_fn(q, t):
        return branch_scores(q, t, normalize, mask)
    fast = _value_and_grads(fast_fn, query, tokens, weights)
    ref = _value_and_grads(lambda q, t: reference_branch_scores(q, t, normalize, mask),
                           query, tokens, weights)
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(scoring, "MAX_CHUNK_ELEMENTS", 10)  # one video per chunk
    chunked = _value_and_grads(fast_fn, query, tokens, weights)
    for a, b in zip(chunked, ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dot_and_cosine_together_match_two_reference_calls():
    query, tokens, weights = _inputs(seed=1)
    dots, cosines = branch_dot_and_cosine(query, tokens)
    loss = (dots * weights).sum() + (cosines * weights.flip(0)).sum()
    grads = torch.autograd.grad(loss, (query, tokens))
    ref_loss = ((reference_branch_scores(query, tokens, False) * weights).sum()
                + (reference_branch_scores(query, tokens, True) * weights.flip(0)).sum())
    ref_grads = torch.autograd.grad(ref_loss, (query, tokens))
    assert torch.allclose(loss, ref_loss, rtol=1e-12)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_ties_fall_back_to_amax_gradient_split():
    # two identical tokens: amax splits the gradient between them; the fast path must too
    query = torch.tensor([[1.0, 2.0]], requires_grad=True)
    tokens = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [-1.0, 0.0]]], requires_grad=True)
    branch_scores(query, tokens, normalize=False).sum().backward()
    assert torch.allclose(tokens.grad[0, 0], torch.tensor([0.5, 1.0]))
    assert torch.allclose(tokens.grad[0, 1], torch.tensor([0.5, 1.0]))
    assert torch.all(tokens.grad[0, 2] == 0)


def test_float32_fast_scores_close_to_reference():
    g = torch.Generator().manual_seed(2)
    query, tokens = torch.randn(40, 32, generator=g), torch.randn(9, 16, 32, generator=g)
    dots, cosines = branch_dot_and_cosine(query, tokens)
    assert torch.allclose(dots, reference_branch_scores(query, tokens, False), rtol=1e-5, atol=1e-5)
    reference = reference_branch_scores(query, tokens, True)
    assert torch.allclose(cosines, reference, rtol=1e-5, atol=1e-6)


def test_packed_query_encoder_matches_padded_reference():
    from prvr.config import ModelConfig
    from prvr.models import create_model

    torch.manual_seed(0)
    model = create_model(ModelConfig(input_dim=12, hidden=16, heads=2, frame_tokens=8,
                                     clip_tokens=4, max_query_len=7)).double().eval()
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([1, 7, 3, 5])
    mask = torch.arange(7)[None, :] < lengths[:, None]  # (4, 7)
    feats = torch.randn(4, 7, 12, generator=g, dtype=torch.float64) * mask[..., None]
    feats.requires_grad_()
    encoder = model.query_encoder
    fast, ref = encoder(feats, mask), encoder.forward_padded(feats, mask)
    assert torch.allclose(fast, ref, rtol=1e-10, atol=1e-12)
    weights = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    params = [feats] + list(encoder.parameters())
    grads = torch.autograd.grad((fast * weights).sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad((ref * weights).sum(), params, allow_unused=True)
    for a, b in zip(grads, ref_grads):
        if b is None:
            assert a is None or torch.all(a == 0)
        else:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    # padded positions hold garbage: the packed path must not read them
    assert torch.allclose(encoder(feats + 5.0 * ~mask[..., None], mask), fast, rtol=1e-12)


def test_retrieval_loss_matches_reference_scores():
    from prvr.config_losses import LossConfig
    from prvr.losses import retrieval
    from prvr.losses.retrieval import RetrievalLoss

    g = torch.Generator().manual_seed(4)
    query = torch.randn(10, 8, generator=g, dtype=torch.float64, requires_grad=True)
    frames = torch.randn(4, 6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    clips = torch.randn(4, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    owner = torch.arange(10) % 4
    loss_fn = RetrievalLoss(LossConfig())

    def run():
        terms = loss_fn(query=query, frame_tokens=frames, clip_tokens=clips, query_to_video=owner,
                        epoch=30, generator=torch.Generator().manual_seed(0))
        total = sum(terms.values())
        return total.detach(), torch.autograd.grad(total, (query, frames, clips))

    fast = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retrieval, "branch_dot_and_cosine", lambda q, t: (
            reference_branch_scores(q, t, False), reference_branch_scores(q, t, True)))
        ref = run()
    assert torch.allclose(fast[0], ref[0], rtol=1e-12)
    for a, b in zip(fast[1], ref[1]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def _windowed_layer(width, seed=0, dtype=torch.float32):
    from prvr.models.attention import init_weights
    from prvr.models.parallel_gmm import WindowedLayer
    torch.manual_seed(seed)
    layer = WindowedLayer(16, 2, 0.2, width).to(dtype)
    layer.apply(init_weights)
    for p in layer.parameters():  # larger than BERT's init so that every term of the layer matters
        p.data.normal_(0, 0.3)
    return layer.eval()


@pytest.mark.parametrize("width", [None, 0.5, 5.0])
@pytest.mark.parametrize("sizes", [False, True], ids=["uniform", "merged_sizes"])
def test_inference_layer_matches_the_training_forward(width, sizes):
    """WindowedLayer._infer (eval, autograd off: one qkv projection, per-head strided bmm, window and scale
    in place, oneDNN linears) against _forward: the same algebra to 1e-12 in float64 (where the linears are
    F.linear), float32 rounding in float32."""
    g = torch.Generator().manual_seed(1)
    key_bias = torch.rand(3, 7, generator=g, dtype=torch.float64).mul(4).add(1).log()[:, None, None, :] if sizes else None
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        layer = _windowed_layer(width, dtype=dtype)
        bias = None if key_bias is None else key_bias.to(dtype)
        with torch.no_grad():
            fast = layer(x.to(dtype), key_bias=bias)
            reference = layer._forward(x.to(dtype), None, bias)
        assert fast.dtype == dtype
        torch.testing.assert_close(fast, reference, rtol=tol, atol=tol)


def test_inference_layer_under_bfloat16_autocast_matches_the_training_forward():
    layer = _windowed_layer(1.0)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast, reference = layer(x), layer._forward(x, None, None)
    assert fast.dtype == reference.dtype
    torch.testing.assert_close(fast.float(), reference.float(), rtol=0, atol=2e-2)  # both bfloat16 arithmetic


@pytest.mark.parametrize("width", [None, 0.5])
@pytest.mark.parametrize("sizes", [False, True], ids=["uniform", "merged_sizes"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_with_heads_together_equals_head_by_head(width, sizes, dtype):
    """The two inference forms of a layer's attention (under bfloat16 autocast all heads in one product,
    in float32 head by head on strided views) give the same numbers on the same qkv (B, N, 3, heads, d)."""
    from prvr.models.parallel_gmm import _attend_heads_together, _attend_per_head, gaussian_window
    g = torch.Generator().manual_seed(8)
    qkv = torch.randn(3, 7, 3, 4, 5, generator=g).to(dtype)
    window = None if width is None else gaussian_window(7, width)
    key_bias = torch.rand(3, 7, generator=g).mul(4).add(1).log()[:, None, None, :] if sizes else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):  # where qkv is bfloat16
        together = _attend_heads_together(qkv, window, key_bias)
        per_head = _attend_per_head(qkv, window, key_bias)
        head_0 = _attend_per_head(qkv[:, :, :, :1], window, key_bias)
    assert together.shape == (3, 7, 20) and together.dtype == per_head.dtype
    torch.testing.assert_close(together, per_head, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-2)
    assert torch.equal(together[..., :5], head_0)  # head 0 alone


def test_training_and_grad_paths_do_not_take_the_inference_layer(monkeypatch):
    from prvr.models.parallel_gmm import WindowedLayer
    layer = _windowed_layer(1.0)
    monkeypatch.setattr(WindowedLayer, "_infer", lambda *a: pytest.fail("inference path with autograd or dropout"))
    x = torch.randn(2, 6, 16, requires_grad=True)
    layer(x).sum().backward()  # eval mode, autograd on
    layer.train()
    with torch.no_grad():
        layer(x)  # training mode (dropout), autograd off


def test_whole_model_inference_matches_the_reference_path(monkeypatch):
    """gmmformer_v2 with token merging (log-size key bias in the clip block): encode_videos through the
    layers' and blocks' _infer vs the layers' _forward, with oneDNN linears or without, and vs the
    forward that autograd records (the blocks' stacked fusion)."""
    from prvr.config import ModelConfig, MergingConfig
    from prvr.models import attention, create_model
    from prvr.models.parallel_gmm import ParallelGMMBlock, WindowedLayer
    cfg = ModelConfig(name="gmmformer_v2", input_dim=12, hidden=16, heads=2, frame_tokens=8, clip_tokens=4,
                      merging=MergingConfig(enabled=True, stages=(6, 4)))
    model = create_model(cfg, seed=3).eval()
    frames = torch.randn(5, 8, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        fast = model.encode_videos(frames)
        monkeypatch.setattr(attention, "_ONEDNN_LINEAR", {torch.float32: False, torch.bfloat16: False})
        mkl = model.encode_videos(frames)
        monkeypatch.setattr(WindowedLayer, "_infer", lambda self, x, key_bias: self._forward(x, None, key_bias))
        monkeypatch.setattr(ParallelGMMBlock, "_infer", ParallelGMMBlock._forward)
        reference = model.encode_videos(frames)
    with torch.enable_grad():
        recorded = model.encode_videos(frames)
    for key in ("frame_tokens", "clip_tokens"):
        torch.testing.assert_close(fast[key], reference[key], rtol=2e-6, atol=2e-6)
        torch.testing.assert_close(mkl[key], reference[key], rtol=2e-6, atol=2e-6)
        torch.testing.assert_close(fast[key], recorded[key].detach(), rtol=2e-6, atol=2e-6)
        assert recorded[key].requires_grad


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_inference_linear_matches_f_linear(relu, bias):
    from prvr.models.attention import inference_linear
    g = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(37, 24, generator=g), torch.randn(19, 24, generator=g), torch.randn(19, generator=g)
    expected = torch.nn.functional.linear(x, w, b if bias else None)
    expected = expected.relu() if relu else expected
    with torch.no_grad():
        out = inference_linear(x, w, b if bias else None, relu=relu)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert (out >= 0).all() if relu else (out < 0).any()
    xg = x.clone().requires_grad_()  # autograd on: F.linear, whose gradient exists
    inference_linear(xg, w, b, relu=relu).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert inference_linear(x, w, b).dtype == torch.bfloat16  # autocast: F.linear in bfloat16


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_inference_linear_under_bfloat16_autocast_is_autocasts_f_linear(relu, bias, monkeypatch):
    """Under CPU bfloat16 autocast, outside autograd: oneDNN's fused linear in bfloat16 (the probe run
    inside autocast still finds oneDNN usable), the bits of autocast's F.linear (+ ReLU)."""
    from prvr.models import attention
    monkeypatch.setattr(attention, "_ONEDNN_LINEAR", {})
    if not attention._onednn_linear_usable(torch.bfloat16):
        pytest.skip("this CPU has no oneDNN bfloat16 linear (it needs AVX-512); the next test covers the fallback")
    g = torch.Generator().manual_seed(6)
    x, w, b = torch.randn(300, 48, generator=g), torch.randn(40, 48, generator=g), torch.randn(40, generator=g)
    calls = []
    monkeypatch.setattr(attention, "_plain_linear", lambda *a: calls.append(1) or torch.zeros(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention.inference_linear(x, w, b if bias else None, relu=relu)
        expected = torch.nn.functional.linear(x, w, b if bias else None)
        expected = expected.relu() if relu else expected
        hidden = attention.inference_linear(out, torch.randn(8, 40, generator=g), None)  # bfloat16 input
    assert not calls and attention._ONEDNN_LINEAR[torch.bfloat16]
    assert out.dtype == expected.dtype == hidden.dtype == torch.bfloat16
    assert torch.equal(out, expected)



@pytest.mark.parametrize("relu", [False, True])
def test_without_a_onednn_bfloat16_kernel_inference_linear_is_autocasts_f_linear(relu, monkeypatch):
    """A CPU without AVX-512 has oneDNN's float32 linear but no bfloat16 one (it raises "could not create
    a primitive descriptor"): under bfloat16 autocast inference_linear then gives autocast's F.linear."""
    from prvr.models import attention
    monkeypatch.setattr(attention, "_ONEDNN_LINEAR", {torch.float32: attention._onednn_linear_usable(),
                                                      torch.bfloat16: False})
    g = torch.Generator().manual_seed(7)
    x, w, b = torch.randn(30, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(8, generator=g)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention.inference_linear(x, w, b, relu=relu)
        expected = torch.nn.functional.linear(x, w, b)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected.relu() if relu else expected)

def test_the_onednn_probe_leaves_the_global_rng_alone(monkeypatch):
    """The first inference in a process probes oneDNN; training's dropout masks must not depend on
    whether an evaluation ran before (the probe once drew from torch's generator)."""
    from prvr.models import attention
    monkeypatch.setattr(attention, "_ONEDNN_LINEAR", {})
    torch.manual_seed(0)
    before = torch.get_rng_state().clone()
    with torch.no_grad():
        attention.inference_linear(torch.ones(2, 3), torch.ones(4, 3), None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            attention.inference_linear(torch.ones(2, 3), torch.ones(4, 3), None)
    assert set(attention._ONEDNN_LINEAR) == {torch.float32, torch.bfloat16}
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["gmmformer_v2", "gmmformer_v2_lite"])
def test_eval_encoders_without_autograd_match_the_autograd_forward(name):
    """Outside autograd every nn.Linear of attention.py's modules (MultiHeadAttention, the lite model's
    GaussianMixtureAttention, FeedForward) goes through inference_linear; with autograd on they are
    nn.Linear as in training: the two agree to float32 rounding, queries and videos."""
    from prvr.config import ModelConfig
    from prvr.models import create_model
    model = create_model(ModelConfig(name=name, input_dim=12, hidden=16, heads=2, frame_tokens=8,
                                     clip_tokens=4, max_query_len=7), seed=6).eval()
    for p in model.parameters():
        p.data.mul_(3)  # beyond BERT's small init, so that every linear matters
    g = torch.Generator().manual_seed(7)
    frames, feats = torch.randn(3, 8, 12, generator=g), torch.randn(4, 7, 12, generator=g)
    mask = torch.arange(7)[None, :] < torch.tensor([2, 7, 4, 5])[:, None]
    with torch.no_grad():
        fast = {**model.encode_videos(frames), **model.encode_queries(feats, mask)}
    with torch.enable_grad():
        reference = {**model.encode_videos(frames), **model.encode_queries(feats, mask)}
    for key in ("frame_tokens", "clip_tokens", "query"):
        torch.testing.assert_close(fast[key], reference[key].detach(), rtol=5e-6, atol=5e-6, msg=key)
