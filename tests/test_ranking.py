"""prvr.evaluation.ranking: the evaluation's rank counts a query chunk at a time, from either screen
(float32, bfloat16 + float32 rescoring), equal to metrics.rank_counts on split_scores's settled
(Q, V) matrix: random encodings, tie-heavy ones (copied videos, copied queries, integer tokens,
kernels that round by position), a guided branch; the bfloat16 bound holds.
Run: .venv/bin/python -m pytest tests/test_ranking.py -q
"""
import numpy as np
import pytest
import torch

from prvr.evaluation import model_scores, ranking, scoring, ties
from prvr.evaluation.metrics import rank_counts
from prvr.models.base import MAX_CLIP_AND_FRAME
from prvr.models.ms_sl import MS_SL_BRANCHES

WEIGHTS = (0.4, 0.6)


def _encodings(seed=0, n_queries=45, n_videos=23, hidden=16, integer=False, copies=False):
    """Queries (Q, H) and clip (V, 3, H) / frame (V, 6, H) tokens; copies: videos 3, 7 and 11 copy video
    2, queries 5 and 9 copy query 4 (exact ties whatever the arithmetic)."""
    g = torch.Generator().manual_seed(seed)
    draw = (lambda *shape: torch.randint(-3, 4, shape, generator=g).float()) if integer else (
        lambda *shape: torch.randn(*shape, generator=g))
    query = draw(n_queries, hidden)
    videos = {"clip_tokens": draw(n_videos, 3, hidden), "frame_tokens": draw(n_videos, 6, hidden)}
    if copies:
        for tokens in videos.values():
            tokens[[3, 7, 11]] = tokens[2].clone()
        query[[5, 9]] = query[4].clone()
    positive = torch.randint(0, n_videos, (n_queries,), generator=g).numpy()
    positive[:8] = 2  # the copied video is the relevant one of several queries
    return {"query": query}, videos, positive


def _exact_per_query(queries, videos, branches):
    """The evaluation's float64 recomputation before issue 23: one query and its candidates at a time."""
    def exact(query, candidates):
        one = {k: v[query:query + 1].double() for k, v in queries.items()}  # (1, H)
        some = {k: v[torch.from_numpy(candidates)].double() for k, v in videos.items()}  # (C, N, H)
        return model_scores.model_scores_chunked(one, some, branches, WEIGHTS, 1, torch.float64)[0].numpy()
    return exact


def _reference(queries, videos, branches, positive, tolerance, query_chunk=7):
    """The evaluation before issue 23: the whole (Q, V) float64 matrix, near ties settled query by
    query, then rank_counts."""
    scores = model_scores.model_scores_chunked(queries, videos, branches, WEIGHTS, query_chunk).numpy()
    ties.settle_near_ties(scores, positive, _exact_per_query(queries, videos, branches), tolerance)
    return rank_counts(scores, positive)


def _counts(queries, videos, branches, positive, tolerance, screen, query_chunk=7):
    higher, tied, stats = ranking.split_rank_counts(queries, videos, branches, WEIGHTS, positive, tolerance,
                                                    query_chunk, screen)
    return (higher, tied), stats


@pytest.fixture
def rescore_everything(monkeypatch):
    monkeypatch.setattr(ranking, "MAX_RESCORED", 1.0)  # small splits: most pairs lie within the band


CASES = [dict(seed=0), dict(seed=1, hidden=48), dict(seed=2, integer=True, copies=True),
         dict(seed=3, copies=True), dict(seed=4, integer=True, n_videos=5)]


@pytest.mark.parametrize("case", CASES, ids=["random", "random_h48", "integer_copies", "float_copies", "few_videos"])
@pytest.mark.parametrize("tolerance", [0.0, 1e-6])
@pytest.mark.parametrize("screen", ["float32", "bfloat16"])
def test_counts_equal_the_settled_matrix(rescore_everything, case, tolerance, screen):
    queries, videos, positive = _encodings(**case)
    reference = _reference(queries, videos, MAX_CLIP_AND_FRAME, positive, tolerance)
    got, stats = _counts(queries, videos, MAX_CLIP_AND_FRAME, positive, tolerance, screen)
    assert all(np.array_equal(a, b) for a, b in zip(got, reference))
    if case.get("copies"):
        assert (reference[1][:8] >= 3).all()  # the copies of the relevant video tie with it
    if screen == "bfloat16":
        assert stats.bfloat16_chunks == 7 and stats.float32_chunks == 0 and stats.rescored_pairs >= 45


@pytest.mark.parametrize("tolerance", [0.0, 1e-6])
@pytest.mark.parametrize("screen", ["float32", "bfloat16"])
def test_ties_survive_kernels_that_round_by_position(rescore_everything, monkeypatch, screen, tolerance):
    """Copies scored a few ulps apart by the float32 kernels (as an Xeon's edge tiles did) still tie:
    the counts are those of exact arithmetic, whatever the screen."""
    queries, videos, positive = _encodings(seed=5, integer=True, copies=True)
    reference = _reference(queries, videos, MAX_CLIP_AND_FRAME, positive, tolerance)
    real = scoring._cosine_block_maxima

    def rounded(query, unit, inv_query):
        out = real(query, unit, inv_query)  # (c, B)
        return out * (1 + torch.arange(out.shape[1]).remainder(3).to(out.dtype) * 2.0 ** -23)
    monkeypatch.setattr(scoring, "_cosine_block_maxima", rounded)
    for chunk in (1, 4, 45):
        got, _ = _counts(queries, videos, MAX_CLIP_AND_FRAME, positive, tolerance, screen, chunk)
        assert all(np.array_equal(a, b) for a, b in zip(got, reference)), chunk


def test_float32_screen_scores_are_the_branchwise_numbers():
    """A float32 chunk (videos prepared once, both branches fused per chunk) is, to the bit, the rows
    of prvr_scores_chunked (each branch over every query, then fused), as the evaluation scored before."""
    queries, videos, _ = _encodings(seed=6)
    whole = scoring.prvr_scores_chunked(queries["query"], videos["clip_tokens"], videos["frame_tokens"],
                                        *WEIGHTS, query_chunk=8)
    for start, chunk in model_scores.fused_chunks(queries, videos, MAX_CLIP_AND_FRAME, WEIGHTS, 8):
        assert torch.equal(chunk, whole[start:start + 8])


@pytest.mark.parametrize("branches", [MAX_CLIP_AND_FRAME, MS_SL_BRANCHES], ids=["max", "guided"])
def test_pair_scorer_is_the_per_query_float64_score(branches):
    """PairScorer (videos grouped, each distinct video once) gives the per-query float64 scores to
    float64 rounding, and copies of a video exactly one value."""
    queries, videos, _ = _encodings(seed=12, copies=True)
    if branches is MS_SL_BRANCHES:
        videos = {"proposals": videos["frame_tokens"], "guided_frames": videos["frame_tokens"].flip(1)}
    rows = np.repeat(np.arange(45), 23)
    cols = np.tile(np.arange(23), 45)
    got = ranking.PairScorer(queries, videos, branches, WEIGHTS)(rows, cols).reshape(45, 23)
    exact = _exact_per_query(queries, videos, branches)
    for q in range(45):
        np.testing.assert_allclose(got[q], exact(q, np.arange(23)), rtol=0, atol=1e-14)
    assert (got[:, [3, 7, 11]] == got[:, [2]]).all()
    assert list(ranking.canonical_videos(videos, model_scores.video_keys(branches), np.array([4, 3, 2, 7, 11]))) == [4, 3, 3, 3, 3]


def test_matrix_settled_by_pairs_ranks_like_query_by_query():
    """split_scores settles its matrix with ties.settle_near_pairs: the counts of the per-query way."""
    queries, videos, positive = _encodings(seed=13, integer=True, copies=True)
    scores = model_scores.model_scores_chunked(queries, videos, MAX_CLIP_AND_FRAME, WEIGHTS, 7).numpy()
    settled = ties.settle_near_pairs(scores, positive, ranking.PairScorer(queries, videos, MAX_CLIP_AND_FRAME, WEIGHTS),
                                     1e-6)
    assert settled >= 8
    reference = _reference(queries, videos, MAX_CLIP_AND_FRAME, positive, 1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(rank_counts(scores, positive), reference))


def test_too_many_pairs_to_rescore_falls_back_to_float32(monkeypatch):
    queries, videos, positive = _encodings(seed=7)
    reference = _reference(queries, videos, MAX_CLIP_AND_FRAME, positive, 1e-6)
    monkeypatch.setattr(ranking, "MAX_RESCORED", 0.0)
    got, stats = _counts(queries, videos, MAX_CLIP_AND_FRAME, positive, 1e-6, "bfloat16")
    assert all(np.array_equal(a, b) for a, b in zip(got, reference))
    assert stats.bfloat16_chunks == 0 and stats.float32_chunks == 7


def test_guided_branch_float32_and_auto(monkeypatch):
    """MS-SL's guided branch: the float32 screen equals the matrix; bfloat16 has no bound there and is
    refused; auto takes float32 even on a CPU with native bfloat16."""
    g = torch.Generator().manual_seed(8)
    queries = {"query": torch.randn(20, 16, generator=g)}
    videos = {"proposals": torch.randn(9, 5, 16, generator=g), "guided_frames": torch.randn(9, 5, 16, generator=g)}
    videos["proposals"][4] = videos["proposals"][1]
    videos["guided_frames"][4] = videos["guided_frames"][1]
    positive = np.arange(20) % 9
    reference = _reference(queries, videos, MS_SL_BRANCHES, positive, 1e-6)
    monkeypatch.setattr(ranking, "native_bfloat16", lambda: True)
    for screen in ("float32", "auto"):
        got, stats = _counts(queries, videos, MS_SL_BRANCHES, positive, 1e-6, screen)
        assert all(np.array_equal(a, b) for a, b in zip(got, reference)) and stats.bfloat16_chunks == 0
    with pytest.raises(ValueError, match="guided"):
        ranking.split_rank_counts(queries, videos, MS_SL_BRANCHES, WEIGHTS, positive, 1e-6, 7, "bfloat16")


def test_auto_screen_follows_the_cpu(monkeypatch, rescore_everything):
    queries, videos, positive = _encodings(seed=9)
    for native, used in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(ranking, "native_bfloat16", lambda native=native: native)
        assert ranking.pick_screen("auto", MAX_CLIP_AND_FRAME) == used
        _, stats = _counts(queries, videos, MAX_CLIP_AND_FRAME, positive, 1e-6, "auto")
        assert (stats.bfloat16_chunks > 0) == native
    with pytest.raises(ValueError, match="screen"):
        ranking.pick_screen("float16", MAX_CLIP_AND_FRAME)


@pytest.mark.parametrize("hidden", [16, 384])
def test_bfloat16_screen_is_within_its_bound(hidden):
    """Every bfloat16-screened cosine max lies within bf16_bound(H) of the float32 one; aligned vectors
    (cosines near 1, the largest output rounding) included."""
    g = torch.Generator().manual_seed(10)
    query = torch.randn(64, hidden, generator=g)
    tokens = torch.randn(40, 8, hidden, generator=g)
    tokens[:20, 0] = query[:20] * 3 + 0.01 * torch.randn(20, hidden, generator=g)  # near-parallel pairs
    prepared = model_scores.prepare_videos(MAX_CLIP_AND_FRAME[1:], {"frame_tokens": tokens})
    exact = model_scores.branch_chunk(MAX_CLIP_AND_FRAME[1], query, prepared)
    prepared["bf16", "frame_tokens"] = prepared["unit", "frame_tokens"].bfloat16()
    branches = (MAX_CLIP_AND_FRAME[1], MAX_CLIP_AND_FRAME[1])
    screened = ranking._bf16_chunk({"query": query}, prepared, branches, (1.0, 0.0))
    error = (screened - exact).abs().max().item()
    assert 0 < error <= ranking.bf16_bound(hidden)
    assert ranking.bf16_bound(384) == pytest.approx(0.01181, abs=1e-5)


def test_nan_scores_name_the_query():
    queries, videos, positive = _encodings(seed=11)
    videos["frame_tokens"][5, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN in the row of query 0"):
        _counts(queries, videos, MAX_CLIP_AND_FRAME, positive, 1e-6, "float32")
