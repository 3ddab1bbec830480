"""Tests of the retrieval loss (prvr.losses): a hand-worked 2x2 case, loop references, gradients,
negative sampling and its schedule.  Run: .venv/bin/python -m pytest tests/test_losses.py -q
"""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from prvr.config_losses import LossConfig
from prvr.losses import (CompositeLoss, RetrievalLoss, create_loss, multi_positive_nce,
                         sample_negatives)

# Two videos, two tokens each; query 0 belongs to video 0, query 1 to video 1.
QUERY = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
TOKENS = torch.tensor([[[2.0, 0.0], [0.0, -1.0]],    # video 0
                       [[0.0, 1.0], [1.0, 1.0]]])    # video 1
Q2V = torch.tensor([0, 1])


def test_hand_computed_two_by_two():
    # Max-over-tokens dot products:  s = [[2, 1], [0, 2]]
    # query->video rows: log(e^2 + e^1) - 2 and log(e^0 + e^2) - 2
    # video->query columns: log(e^2 + e^0) - 2 and log(e^1 + e^2) - 2
    t2v = (math.log(math.e ** 2 + math.e) - 2 + math.log(1 + math.e ** 2) - 2) / 2
    v2t = (math.log(math.e ** 2 + 1) - 2 + math.log(math.e + math.e ** 2) - 2) / 2
    # Max-over-tokens cosines: c = [[1, 1/sqrt2], [0, 1]]; margin 0.5, one negative per row:
    # q0: 0.5 + 0.7071 - 1 = 0.2071, q1: 0.5 + 0 - 1 < 0  -> mean 0.2071 / 2
    # v0: 0.5 + 0 - 1 < 0,  v1: 0.5 + 0.7071 - 1 = 0.2071 -> mean 0.2071 / 2
    hinge = 0.5 + 1 / math.sqrt(2) - 1
    cfg = LossConfig(nce_weight_clip=1.0, nce_weight_frame=0.5, margin=0.5)
    terms = RetrievalLoss(cfg)(query=QUERY, frame_tokens=TOKENS, clip_tokens=TOKENS,
                               query_to_video=Q2V, epoch=0, generator=torch.Generator())
    assert set(terms) == {"nce_clip", "nce_frame", "trip_clip", "trip_frame"}
    assert terms["nce_clip"].item() == pytest.approx(t2v + v2t, rel=1e-6)
    assert terms["nce_frame"].item() == pytest.approx(0.5 * (t2v + v2t), rel=1e-6)
    assert terms["trip_clip"].item() == pytest.approx(hinge, rel=1e-6)
    assert terms["trip_frame"].item() == pytest.approx(hinge, rel=1e-6)


def reference_nce(scores, q2v):
    """Slow loop version of the multi-positive InfoNCE."""
    n_q, n_v = scores.shape
    t2v = [torch.logsumexp(scores[q], 0) - scores[q, q2v[q]] for q in range(n_q)]
    v2t = []
    for v in range(n_v):
        own = [q for q in range(n_q) if q2v[q] == v]
        if own:
            v2t.append(torch.logsumexp(scores[:, v], 0) - torch.logsumexp(scores[own, v], 0))
    return torch.stack(t2v).mean() + torch.stack(v2t).mean()


def reference_hardest_triplet(cos, q2v, margin):
    """Loop version of the triplet loss with the hardest negative in both directions."""
    n_q, n_v = cos.shape
    t2v = [torch.relu(margin + max(cos[q, v] for v in range(n_v) if v != q2v[q]) - cos[q, q2v[q]])
           for q in range(n_q)]
    v2t = []
    for v in range(n_v):
        own = [q for q in range(n_q) if q2v[q] == v]
        if own:
            neg = max(cos[q, v] for q in range(n_q) if q2v[q] != v)
            v2t.append(torch.relu(margin + neg - cos[own, v].mean()))
    return torch.stack(t2v).mean() + torch.stack(v2t).mean()


def random_batch(n_q=9, n_v=4, n_tok=3, dim=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(n_q, dim, generator=g, dtype=dtype)
    frames = torch.randn(n_v, n_tok, dim, generator=g, dtype=dtype)
    clips = torch.randn(n_v, 2, dim, generator=g, dtype=dtype)
    q2v = torch.cat([torch.arange(n_v), torch.randint(0, n_v - 1, (n_q - n_v,), generator=g)])
    return query, frames, clips, q2v  # video n_v - 1 has exactly one query


def test_against_loop_reference_with_hardest_negatives():
    query, frames, clips, q2v = random_batch()
    cfg = LossConfig(nce_weight_clip=0.3, nce_weight_frame=0.7, margin=0.4,
                     hard_negative_topk=1, hard_negative_start_epoch=2)
    terms = RetrievalLoss(cfg)(query=query, frame_tokens=frames, clip_tokens=clips,
                               query_to_video=q2v, epoch=2)
    for name, tokens, weight in (("clip", clips, 0.3), ("frame", frames, 0.7)):
        dots = torch.einsum("qh,bnh->qbn", query, tokens).amax(-1)
        qn, tn = F.normalize(query, dim=-1), F.normalize(tokens, dim=-1)
        cos = torch.einsum("qh,bnh->qbn", qn, tn).amax(-1)
        expected = weight * reference_nce(dots, q2v).item()
        assert terms[f"nce_{name}"].item() == pytest.approx(expected, rel=1e-5)
        assert terms[f"trip_{name}"].item() == pytest.approx(
            reference_hardest_triplet(cos, q2v, 0.4).item(), rel=1e-5, abs=1e-7)


def test_videos_without_queries_are_skipped_in_nce():
    scores = torch.tensor([[1.0, 0.0, 3.0], [2.0, 1.0, 0.5]])
    positives = torch.tensor([[True, False, False], [True, False, False]])
    got = multi_positive_nce(scores, positives)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(reference_nce(scores, [0, 0]).item(), rel=1e-6)


def test_gradcheck_float64():
    query, frames, clips, q2v = random_batch(n_q=5, n_v=3, n_tok=2, dim=3, seed=1,
                                             dtype=torch.float64)
    loss = RetrievalLoss(LossConfig(margin=1.0, hard_negative_topk=2, hard_negative_start_epoch=0))

    def total(q, f, c):
        g = torch.Generator().manual_seed(0)  # same negatives at every evaluation
        terms = loss(query=q, frame_tokens=f, clip_tokens=c, query_to_video=q2v, epoch=1,
                     generator=g)
        return sum(terms.values())

    inputs = tuple(t.clone().requires_grad_(True) for t in (query, frames, clips))
    assert torch.autograd.gradcheck(total, inputs, eps=1e-6, atol=1e-5)


def test_sampling_is_deterministic_with_a_seeded_generator():
    query, frames, clips, q2v = random_batch(n_q=40, n_v=12, seed=3)
    loss = create_loss(LossConfig(margin=0.3, hard_negative_topk=5, hard_negative_start_epoch=0))
    runs = [loss(query=query, frame_tokens=frames, clip_tokens=clips, query_to_video=q2v,
                 epoch=4, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in ("trip_clip", "trip_frame"))


def test_sample_negatives_respects_pool_and_excludes_positives():
    g = torch.Generator().manual_seed(0)
    scores = torch.arange(10.0).repeat(500, 1)  # every row: 0..9, higher index = harder
    positives = torch.zeros(500, 10, dtype=torch.bool)
    positives[:, 9] = True  # the top-scored column is the positive
    hard, ok = sample_negatives(scores, positives, pool=3, generator=g)
    assert ok.all() and set(hard.tolist()) == {8.0, 7.0, 6.0}
    hardest, _ = sample_negatives(scores, positives, pool=1, generator=g)
    assert set(hardest.tolist()) == {8.0}
    anyneg, _ = sample_negatives(scores, positives, pool=None, generator=g)
    assert set(anyneg.tolist()) == set(range(9))
    _, ok = sample_negatives(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), None, g)
    assert not ok.any()


def test_negative_schedule():
    loss = RetrievalLoss(LossConfig(hard_negative_topk=20, hard_negative_start_epoch=20))
    assert loss.negative_pools(19) == (None, None)
    assert loss.negative_pools(20) == (20, 1)
    never = RetrievalLoss(LossConfig(hard_negative_start_epoch=-1))
    assert never.negative_pools(10 ** 6) == (None, None)


def test_single_video_batch_has_no_triplet_term():
    query, frames, clips, _ = random_batch(n_q=3, n_v=2)
    terms = RetrievalLoss(LossConfig())(query=query, frame_tokens=frames[:1], clip_tokens=clips[:1],
                                        query_to_video=torch.zeros(3, dtype=torch.long))
    assert terms["trip_clip"].item() == 0.0 and torch.isfinite(terms["nce_clip"])


def test_bad_query_to_video():
    loss = RetrievalLoss(LossConfig())
    batch = {"query": QUERY, "frame_tokens": TOKENS, "clip_tokens": TOKENS}
    with pytest.raises(ValueError, match="out of range"):
        loss(**batch, query_to_video=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="query_to_video"):
        loss(**batch, query_to_video=torch.tensor([0.0, 1.0]))


def test_composite_loss_merges_terms_and_ignores_extra_inputs():
    class Extra(torch.nn.Module):
        def forward(self, *, query, **unused):
            return {"extra": query.sum() * 0 + 1.0}

    loss = create_loss(LossConfig()).add(Extra())
    terms = loss(query=QUERY, frame_tokens=TOKENS, clip_tokens=TOKENS, query_to_video=Q2V,
                 clip_sizes=torch.ones(2, 2), epoch=0)
    assert set(terms) == {"nce_clip", "nce_frame", "trip_clip", "trip_frame", "extra"}
    with pytest.raises(ValueError, match="two loss parts"):
        CompositeLoss([RetrievalLoss(LossConfig()), RetrievalLoss(LossConfig())])(
            query=QUERY, frame_tokens=TOKENS, clip_tokens=TOKENS, query_to_video=Q2V)
    with pytest.raises(ValueError, match="hard_negative_topk"):
        RetrievalLoss(replace(LossConfig(), hard_negative_topk=0))
