"""Tests of the retrieval metrics and scores (prvr.evaluation.metrics / scoring): hand cases, the
optimistic tie rule, a slow loop reference, K > V and bad input.
Run: .venv/bin/python -m pytest tests/test_metrics.py -q
"""
import numpy as np
import pytest
import torch

from prvr.evaluation import scoring
from prvr.evaluation.metrics import ranks, recall_at_k, retrieval_metrics
from prvr.evaluation.scoring import branch_scores, prvr_scores


def loop_ranks(scores, positive):
    """Reference: count, one candidate at a time, those scored strictly above the relevant one."""
    out = []
    for q, row in enumerate(scores):
        relevant = row[positive[q]]
        out.append(1 + sum(1 for value in row if value > relevant))
    return np.array(out)


def test_hand_computed_ranks_and_recalls():
    scores = np.array([[0.9, 0.1, 0.5],    # relevant 0 is the top      -> rank 1
                       [0.2, 0.3, 0.1],    # relevant 0, one above       -> rank 2
                       [0.1, 0.8, 0.7],    # relevant 2, one above       -> rank 2
                       [0.3, 0.6, 0.9]])   # relevant 0, two above       -> rank 3
    positive = np.array([0, 0, 2, 0])
    assert ranks(scores, positive).tolist() == [1, 2, 2, 3]
    metrics = retrieval_metrics(scores, positive, ks=(1, 2, 3))
    assert metrics == {"R@1": 25.0, "R@2": 75.0, "R@3": 100.0, "SumR": 200.0}


def test_ties_are_optimistic():
    scores = np.array([[0.5, 0.5, 0.5],    # all tied: rank 1
                       [0.7, 0.7, 0.4],    # tied with the one above: rank 1
                       [0.9, 0.4, 0.4]])   # one strictly above, one tie: rank 2
    assert ranks(scores, np.array([1, 1, 2])).tolist() == [1, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_loop_reference(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(40, 25)).astype(np.float32)  # small ints: many ties
    positive = rng.integers(0, 25, size=40)
    expected = loop_ranks(scores, positive)
    assert np.array_equal(ranks(scores, positive), expected)
    metrics = retrieval_metrics(scores, positive, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert metrics[f"R@{k}"] == pytest.approx(100.0 * np.mean(expected <= k))
    assert metrics["SumR"] == pytest.approx(sum(metrics[f"R@{k}"] for k in (1, 5, 10)))


def test_k_larger_than_number_of_videos():
    scores = np.random.default_rng(0).normal(size=(7, 4))
    metrics = retrieval_metrics(scores, np.arange(7) % 4, ks=(1, 100))
    assert metrics["R@100"] == 100.0 and metrics["R@1"] <= 100.0


def test_default_ks_and_torch_input():
    scores = torch.eye(3)
    metrics = retrieval_metrics(scores, torch.tensor([0, 1, 2]))
    assert metrics == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@100": 100.0, "SumR": 400.0}


@pytest.mark.parametrize("scores, positive, message", [
    (np.zeros((2, 3)), np.array([0, 1, 2]), "positive: expected shape"),
    (np.zeros(3), np.array([0]), "2-D"),
    (np.zeros((2, 3)), np.array([0, 3]), "index 3 out of range"),
    (np.zeros((2, 3)), np.array([-1, 0]), "out of range"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), "integer"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), np.array([0, 1]), "NaN in the row of query 1"),
])
def test_bad_input(scores, positive, message):
    with pytest.raises(ValueError, match=message):
        ranks(scores, positive)


def test_bad_ks_and_empty():
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(np.array([1, 2]), ks=(0,))
    with pytest.raises(ValueError, match="non-empty"):
        recall_at_k(np.array([], dtype=int))


def test_branch_scores_against_loop_and_chunking(monkeypatch):
    g = torch.Generator().manual_seed(0)
    query, tokens = torch.randn(6, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    expected = torch.tensor([[max(torch.cosine_similarity(q, t, dim=0).item() for t in video)
                              for video in tokens] for q in query])
    assert torch.allclose(branch_scores(query, tokens), expected, atol=1e-6)
    dots = torch.tensor([[max(float(q @ t) for t in video) for video in tokens] for q in query])
    assert torch.allclose(branch_scores(query, tokens, normalize=False), dots, atol=1e-5)
    monkeypatch.setattr(scoring, "MAX_CHUNK_ELEMENTS", 20)  # forces one video per chunk
    assert torch.allclose(branch_scores(query, tokens), expected, atol=1e-6)


def test_token_mask_and_fused_scores():
    query = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one video, two tokens
    mask = torch.tensor([[False, True]])
    assert branch_scores(query, tokens).item() == pytest.approx(1.0)
    assert branch_scores(query, tokens, token_mask=mask).item() == pytest.approx(0.0)
    clips = torch.tensor([[[0.0, 1.0]]])  # clip cosine 0, frame cosine 1
    assert prvr_scores(query, clips, tokens, w_clip=0.4, w_frame=0.6).item() == pytest.approx(0.6)
    with pytest.raises(ValueError, match="videos"):
        prvr_scores(query, clips.repeat(2, 1, 1), tokens)
