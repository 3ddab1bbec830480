"""Tests of the retrieval metrics and scores (prvr.evaluation.metrics / scoring): hand cases, the
three tie rules (optimistic, pessimistic, expected), slow loop references (for "expected": every
score-consistent order enumerated), chunking, K > V, bad input, and eval.ties threaded through
evaluate_split and the evaluate stage's metrics.json.
Run: .venv/bin/python -m pytest tests/test_metrics.py -q
"""
import itertools
import json

import numpy as np
import pytest
import torch

from prvr.evaluation import metrics as metrics_module
from prvr.evaluation import scoring
from prvr.evaluation.metrics import rank_counts, ranks, recall_at_k, retrieval_metrics
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
    for rule in ("optimistic", "pessimistic", "expected"):  # no ties: the rules agree
        assert ranks(scores, positive, ties=rule).tolist() == [1, 2, 2, 3]
        metrics = retrieval_metrics(scores, positive, ks=(1, 2, 3), ties=rule)
        assert metrics == {"R@1": 25.0, "R@2": 75.0, "R@3": 100.0, "SumR": 200.0, "queries_with_ties": 0}


def test_ties_are_optimistic():
    scores = np.array([[0.5, 0.5, 0.5],    # all tied: rank 1
                       [0.7, 0.7, 0.4],    # tied with the one above: rank 1
                       [0.9, 0.4, 0.4]])   # one strictly above, one tie: rank 2
    assert ranks(scores, np.array([1, 1, 2]), ties="optimistic").tolist() == [1, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_loop_reference(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(40, 25)).astype(np.float32)  # small ints: many ties
    positive = rng.integers(0, 25, size=40)
    expected = loop_ranks(scores, positive)
    assert np.array_equal(ranks(scores, positive, ties="optimistic"), expected)
    metrics = retrieval_metrics(scores, positive, ks=(1, 5, 10), ties="optimistic")
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
    assert metrics == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@100": 100.0, "SumR": 400.0,
                       "queries_with_ties": 0}


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
        recall_at_k(np.array([0, 1]), np.array([0, 0]), ks=(0,))
    with pytest.raises(ValueError, match="non-empty"):
        recall_at_k(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="tied: expected shape"):
        recall_at_k(np.array([0, 1]), np.array([0]))


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


# --- tie rules (config eval.ties) ---------------------------------------------------------------

def loop_tie_orders(row, relevant):
    """Reference: every order of the videos consistent with the scores (ties in any order), each
    equally likely under uniform random tie-breaking; returns the relevant video's rank in each."""
    out = []
    for order in itertools.permutations(range(len(row))):
        if all(row[a] >= row[b] for a, b in zip(order, order[1:])):
            out.append(order.index(relevant) + 1)
    return np.array(out)


def test_tie_rules_hand_computed():
    scores = np.array([[0.5, 0.5, 0.5, 0.2],    # relevant 0: h = 0, t = 2
                       [0.9, 0.4, 0.4, 0.4]])   # relevant 2: h = 1 (0.9), t = 2 (the other 0.4s)
    positive = np.array([0, 2])
    higher, tied = rank_counts(scores, positive)
    assert higher.tolist() == [0, 1] and tied.tolist() == [2, 2]
    assert ranks(scores, positive, ties="optimistic").tolist() == [1, 2]
    assert ranks(scores, positive, ties="pessimistic").tolist() == [3, 4]
    assert ranks(scores, positive, ties="expected").tolist() == [2.0, 3.0]  # 1 + h + t / 2
    first = retrieval_metrics(scores[:1], positive[:1], ks=(1, 2, 3), ties="expected")
    assert first["R@1"] == pytest.approx(100 / 3) and first["R@2"] == pytest.approx(200 / 3)
    assert first["R@3"] == 100.0 and first["SumR"] == pytest.approx(200.0)
    assert first["queries_with_ties"] == 1
    assert retrieval_metrics(scores[:1], positive[:1], ks=(1, 2, 3), ties="optimistic")["SumR"] == 300.0
    assert retrieval_metrics(scores[:1], positive[:1], ks=(1, 2, 3), ties="pessimistic") == {
        "R@1": 0.0, "R@2": 0.0, "R@3": 100.0, "SumR": 100.0, "queries_with_ties": 1}
    both = retrieval_metrics(scores, positive, ks=(1, 2, 3, 4), ties="expected")
    # second query: P(rank <= K) = clip((K - 1) / 3, 0, 1) = 0, 1/3, 2/3, 1
    assert [both[f"R@{k}"] for k in (1, 2, 3, 4)] == pytest.approx([50 / 3, 50.0, 250 / 3, 100.0])
    assert both["queries_with_ties"] == 2


def test_collapsed_model_gets_chance_level_under_expected_rule():
    scores = np.full((50, 20), 0.3)  # every candidate scored the same
    positive = np.arange(50) % 20
    metrics = retrieval_metrics(scores, positive, ks=(1, 5, 10, 20, 100), ties="expected")
    for k in (1, 5, 10, 20):
        assert metrics[f"R@{k}"] == pytest.approx(100.0 * k / 20)
    assert metrics["R@100"] == 100.0 and metrics["queries_with_ties"] == 50
    assert retrieval_metrics(scores, positive, ties="optimistic")["SumR"] == 400.0  # what ties used to give
    assert retrieval_metrics(scores, positive, ties="pessimistic")["R@10"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tie_rules_against_enumerated_orders(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(12, 6)).astype(np.float64)  # three values over six videos: many ties
    positive = rng.integers(0, 6, size=12)
    orders = [loop_tie_orders(row, p) for row, p in zip(scores, positive)]
    assert np.array_equal(ranks(scores, positive, ties="optimistic"), [o.min() for o in orders])
    assert np.array_equal(ranks(scores, positive, ties="pessimistic"), [o.max() for o in orders])
    assert np.allclose(ranks(scores, positive, ties="expected"), [o.mean() for o in orders])
    ks = (1, 2, 3, 5, 6, 10)
    metrics = retrieval_metrics(scores, positive, ks=ks, ties="expected")
    for k in ks:
        assert metrics[f"R@{k}"] == pytest.approx(100.0 * np.mean([np.mean(o <= k) for o in orders]))
    assert metrics["SumR"] == pytest.approx(sum(metrics[f"R@{k}"] for k in ks))
    assert metrics["queries_with_ties"] == sum(o.min() != o.max() for o in orders)


def test_queries_with_ties_counts_only_ties_with_the_relevant_video():
    scores = np.array([[1.0, 1.0, 0.0],    # relevant tied with video 1            -> counted
                       [1.0, 0.0, 0.0],    # the others tie among themselves only  -> not counted
                       [0.2, 0.5, 0.5],    # relevant 0 below two tied candidates  -> not counted
                       [0.5, 0.5, 0.5]])   # all tied                              -> counted
    metrics = retrieval_metrics(scores, np.array([0, 0, 0, 2]), ks=(1,))
    assert metrics["queries_with_ties"] == 2 and isinstance(metrics["queries_with_ties"], int)


def test_rank_counts_chunked_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(11, 5)).astype(np.float32)
    positive = rng.integers(0, 5, size=11)
    whole = rank_counts(scores, positive)
    for limit in (1, 7, 12):  # one row per chunk, one, two
        monkeypatch.setattr(metrics_module, "MAX_CHUNK_ELEMENTS", limit)
        chunked = rank_counts(scores, positive)
        assert all(np.array_equal(a, b) for a, b in zip(whole, chunked))


def test_bad_tie_rule_names_the_config_key():
    scores, positive = np.zeros((2, 3)), np.array([0, 1])
    message = r"eval\.ties: expected one of expected, optimistic, pessimistic, got 'random'"
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(scores, positive, ties="random")
    with pytest.raises(ValueError, match=r"eval\.ties"):
        ranks(scores, positive, ties="mean")
    with pytest.raises(ValueError, match=r"eval\.ties"):
        recall_at_k(np.array([0]), np.array([1]), ties="Expected")


def test_evaluate_split_honours_cfg_ties(monkeypatch):
    from prvr.config import EvalConfig
    from prvr.evaluation import evaluate
    scores = np.array([[0.5, 0.5, 0.5, 0.2]])
    monkeypatch.setattr(evaluate, "split_rank_counts", lambda model, dataset, cfg, device="cpu", screen="auto":
                        rank_counts(scores, np.array([0])))
    got = {rule: evaluate.evaluate_split(None, None, EvalConfig(ks=(1, 3), ties=rule))
           for rule in ("expected", "optimistic", "pessimistic")}
    assert got["expected"]["R@1"] == pytest.approx(100 / 3)
    assert got["optimistic"]["R@1"] == 100.0 and got["pessimistic"]["R@1"] == 0.0
    assert all(m["R@3"] == 100.0 and m["queries_with_ties"] == 1 for m in got.values())
    assert EvalConfig().ties == "expected"
    assert evaluate.evaluate_split(None, None, EvalConfig(ks=(1,)))["R@1"] == pytest.approx(100 / 3)


def test_evaluate_stage_records_tie_rule_and_table_still_reads_it(tmp_path, monkeypatch):
    """metrics.json of the evaluate stage names the rule and the tied-query count; the ablation table
    (mean/std over seeds of R@K and SumR) is not disturbed by those extra keys."""
    import prvr.data.dataset
    import prvr.provenance
    from prvr.config import Config, EvalConfig
    from prvr.evaluation import evaluate
    from prvr.reporting.tables import ablation_table
    from prvr.stages import evaluate_run

    class FakeDataset:
        def __init__(self, *args, **kwargs):
            self.index = type("Index", (), {"caption_ids": ["v0#0", "v1#0"]})()

        @classmethod
        def for_model(cls, *args, **kwargs):
            return cls()

        def __len__(self):
            return 4

    cfg = Config(eval=EvalConfig(ties="pessimistic"))
    scores = np.array([[0.5, 0.5, 0.5, 0.2], [0.1, 0.9, 0.3, 0.2]])  # query 0: h 0, t 2; query 1: rank 1
    import prvr.training.model_file
    monkeypatch.setattr(prvr.training.model_file, "read_model_file", lambda path: {"seed": int(path.parent.name)})
    monkeypatch.setattr(prvr.training.model_file, "model_from_saved", lambda saved, source, device=None: (None, cfg))
    monkeypatch.setattr(prvr.data.dataset, "PRVRDataset", FakeDataset)
    monkeypatch.setattr(evaluate, "split_rank_counts", lambda *a, **kw: rank_counts(scores, np.array([0, 1])))
    monkeypatch.setattr(prvr.provenance, "provenance", lambda cfg, seed, inputs, *a, **kw: {"seed": seed})
    paths = []
    for seed in (1, 2):
        (tmp_path / str(seed)).mkdir()
        out = tmp_path / str(seed) / "metrics.json"
        evaluate_run(tmp_path / str(seed) / "model.pt", tmp_path / "c.txt", tmp_path / "v.h5", tmp_path / "t.h5", out)
        paths.append(out)
    record = json.loads(paths[0].read_text())
    assert record["tie_rule"] == "pessimistic" and record["queries_with_ties"] == 1
    assert record["metrics"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0, "R@100": 100.0, "SumR": 350.0,
                                 "queries_with_ties": 1}
    (row,) = ablation_table({"baseline": paths})
    assert row["seeds"] == "1 2" and row["R@1"] == 50.0 and row["SumR"] == 350.0 and row["SumR_std"] == 0.0
    assert "queries_with_ties" not in row
