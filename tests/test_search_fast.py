"""prvr.search.fast_scores: the index's scores equal the evaluation's cosines, the float16 products stay
within their stated bound, and the top k found through them equals the exhaustive exact ranking,
ties by id included (copied videos, near ties), with the fallbacks where the bound does not hold."""
import numpy as np
import pytest
import torch

from prvr.evaluation import model_scores
from prvr.models.base import MAX_CLIP_AND_FRAME as BRANCHES
from prvr.search.fast_scores import (HALF_BOUND, exact_top_k, half_cosine_maxima, index_scores, inverse_norms,
                                    pairwise_scores)
from prvr.search.searcher import ranking

WEIGHTS = (0.4, 0.6)


def _index(n_videos=300, seed=0, dtype=torch.float16):
    g = torch.Generator().manual_seed(seed)
    tokens = {"frame_tokens": torch.randn(n_videos, 8, 32, generator=g).to(dtype),
              "clip_tokens": torch.randn(n_videos, 3, 32, generator=g).to(dtype)}
    ids = [f"v{i:04d}" for i in range(n_videos)]
    return tokens, {k: inverse_norms(t) for k, t in tokens.items()}, ids


def test_index_scores_are_the_evaluations():
    tokens, inv, _ = _index()
    query = {"query": torch.randn(5, 32)}
    full = {k: t.float() for k, t in tokens.items()}
    expected = model_scores.model_scores_chunked(query, full, BRANCHES, WEIGHTS)
    torch.testing.assert_close(index_scores(query, tokens, inv, BRANCHES, WEIGHTS), expected, atol=1e-6, rtol=0)


def test_half_products_stay_within_their_bound():
    tokens, inv, _ = _index(2000, seed=3)
    query = torch.randn(7, 32) * 5
    exact = index_scores({"query": query}, tokens, inv, BRANCHES[1:] * 2, (1.0, 0.0))  # frame branch alone
    half = half_cosine_maxima(query, tokens["frame_tokens"], inv["frame_tokens"]).double()
    assert (half - exact).abs().max() <= HALF_BOUND / 2


@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_equals_the_exhaustive_ranking_with_copies_and_near_ties(k):
    tokens, _, ids = _index()
    for key, t in tokens.items():  # exact copies (tie to the bit) and near ties (differ in one value)
        t[10:20] = t[0]
        t[20:30] = t[1]
        t[25, 0, 0] += 0.001
    inv = {key: inverse_norms(t) for key, t in tokens.items()}
    every = torch.arange(len(ids))
    g = torch.Generator().manual_seed(1)
    queries = [torch.randn(1, 32, generator=g) for _ in range(20)]
    queries.append(tokens["frame_tokens"][0, :1].float())  # the copies' own token: exact ties at the top
    for q in queries:
        query = {"query": q}
        full = pairwise_scores(query, tokens, BRANCHES, WEIGHTS, every).numpy()  # the exhaustive reference
        got, scores = exact_top_k(query, tokens, inv, BRANCHES, WEIGHTS, k, ids, ranking)
        assert got == ranking(full, ids)[:k]
        np.testing.assert_array_equal(scores.numpy()[got], full[got])
        np.testing.assert_allclose(full, index_scores(query, tokens, inv, BRANCHES, WEIGHTS)[0].numpy(), atol=1e-6)
    assert len(set(full[10:20])) == 1 and full[0] == full[10]  # the copies tie to the bit


def test_float32_tokens_fall_back_to_scoring_every_video():
    tokens, inv, ids = _index(dtype=torch.float32)
    query = {"query": torch.randn(1, 32)}
    order, scores = exact_top_k(query, tokens, inv, BRANCHES, WEIGHTS, 5, ids, ranking)
    assert not torch.isnan(scores).any()  # every video scored
    assert order == ranking(index_scores(query, tokens, inv, BRANCHES, WEIGHTS)[0].numpy(), ids)[:5]
