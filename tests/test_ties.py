"""prvr.evaluation.ties on hand-computed cases: which candidates are recomputed, which become ties."""
import numpy as np
import pytest

from prvr.evaluation.metrics import retrieval_metrics
from prvr.evaluation.ties import NEAR_BAND, near_candidates, settle_near_ties


def test_near_candidates_are_those_within_the_band_of_the_relevant_score():
    scores = np.array([[0.5, 0.5 + 5e-5, 0.5 - 2e-4, 0.9],
                       [0.1, 0.2, 0.3, 0.4]])
    assert [(q, c.tolist()) for q, c in near_candidates(scores, np.array([0, 3]))] == [(0, [0, 1])]


def test_settled_scores_are_the_exact_ones_and_a_tie_within_the_tolerance():
    scores = np.array([[0.5, 0.5 + 1e-7, 0.5 - 3e-5, 0.1]])  # float32 arithmetic put video 1 above
    exact = {0: 0.5, 1: 0.5 + 1e-9, 2: 0.5 - 3e-5}          # the float64 arithmetic: a copy of video 0
    calls = []
    settled = settle_near_ties(scores, np.array([0]), lambda q, c: calls.append((q, c.tolist())) or
                               np.array([exact[i] for i in c]), tolerance=1e-6)
    assert settled == 1 and calls == [(0, [0, 1, 2])]
    assert scores.tolist() == [[0.5, 0.5, 0.5 - 3e-5, 0.1]]
    metrics = retrieval_metrics(scores, np.array([0]), ks=(1, 2), ties="expected")
    assert metrics["queries_with_ties"] == 1 and metrics["R@1"] == 50.0 and metrics["R@2"] == 100.0


def test_tolerance_zero_keeps_a_strict_order_the_float64_scores_resolve():
    scores = np.array([[0.5, 0.5 + 1e-7]])
    settle_near_ties(scores, np.array([0]), lambda q, c: np.array([0.5, 0.5 - 1e-9])[c], tolerance=0.0)
    assert scores[0, 1] < scores[0, 0]  # float32 had it above; float64 says below


@pytest.mark.parametrize("tolerance", [-1e-6, NEAR_BAND, float("nan")])
def test_a_tolerance_outside_the_band_is_refused(tolerance):
    with pytest.raises(ValueError, match="eval.tie_tolerance"):
        settle_near_ties(np.zeros((1, 2)), np.array([0]), lambda q, c: np.zeros(len(c)), tolerance)
