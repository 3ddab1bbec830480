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
    from prvr.config import LossConfig
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
