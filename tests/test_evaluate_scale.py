"""Evaluation in query chunks (prvr_scores_chunked, evaluate.split_scores): the same ranks and metrics
as the unchunked computation (prvr_scores over every query at once), ties included, no tie fallback
needed across chunks, and a cache-backed split evaluated like the stores.
Run: .venv/bin/python -m pytest tests/test_evaluate_scale.py -q
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prvr.config import EvalConfig, ModelConfig
from prvr.data.dataset import PRVRDataset
from prvr.store.feature_cache import build_feature_cache
from prvr.store.feature_store import write_features
from prvr.evaluation import evaluate, model_scores, scoring
from prvr.evaluation.ties import settle_near_ties
from prvr.evaluation.metrics import rank_counts, retrieval_metrics
from prvr.evaluation.scoring import prvr_scores, prvr_scores_chunked
from prvr.models import create_model
from prvr.models.factory import MODEL_BUILDERS

RULES = ("expected", "optimistic", "pessimistic")


def _tokens(seed=0, n_queries=37, n_videos=11, hidden=16, integer=False):
    """Queries and both branches' tokens. integer: small integer entries, so that every dot product
    is exact whatever the summation order; videos 3 and 7 then copy video 2 (exact ties)."""
    g = torch.Generator().manual_seed(seed)
    draw = (lambda *shape: torch.randint(-8, 9, shape, generator=g).float()) if integer else (
        lambda *shape: torch.randn(*shape, generator=g))
    query, clip, frame = draw(n_queries, hidden), draw(n_videos, 3, hidden), draw(n_videos, 6, hidden)
    if integer:
        clip[[3, 7]], frame[[3, 7]] = clip[2].clone(), frame[2].clone()
    return query, clip, frame


CHUNKS = [(1, 1), (4, 50), (5, 1 << 21), (37, 100), (100, 1 << 21)]  # (query_chunk, BLOCK_ELEMENTS)


@pytest.mark.parametrize("chunk, block", CHUNKS)
def test_chunked_scores_rank_like_prvr_scores(monkeypatch, chunk, block):
    """Float tokens: the same arithmetic as prvr_scores, element by element; only a matrix product
    of another shape may round a dot product's last bit differently (MKL does), so scores agree to
    float32 rounding and the ranks (no candidates that close here) exactly."""
    monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", block)
    query, clip, frame = _tokens()
    whole = prvr_scores(query, clip, frame, w_clip=0.3, w_frame=0.7)
    chunked = prvr_scores_chunked(query, clip, frame, 0.3, 0.7, query_chunk=chunk, dtype=torch.float64)
    assert chunked.dtype == torch.float64 and chunked.shape == (37, 11)
    torch.testing.assert_close(chunked.float(), whole, rtol=0, atol=4e-7)
    positive = np.arange(37) % 11
    assert all(np.array_equal(a, b) for a, b in zip(rank_counts(whole.numpy().astype(np.float64), positive),
                                                    rank_counts(chunked.numpy(), positive)))


@pytest.mark.parametrize("chunk, block", CHUNKS)
def test_chunked_scores_equal_prvr_scores_with_ties(monkeypatch, chunk, block):
    """Integer tokens (exact dot products, whatever the matrix shapes): the chunked scores are
    prvr_scores's to float32 rounding (they scale the tokens before the product), copied videos tie
    to the bit, and the metrics under every tie rule are the same."""
    monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", block)
    query, clip, frame = _tokens(integer=True)
    calls = []
    real = scoring.reference_branch_scores
    monkeypatch.setattr(scoring, "reference_branch_scores", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    whole = prvr_scores(query, clip, frame)
    chunked = prvr_scores_chunked(query, clip, frame, query_chunk=chunk, dtype=torch.float64)
    assert not calls  # every max over tokens unique: the fast path throughout (the fallback: next test)
    torch.testing.assert_close(chunked, whole.double(), rtol=0, atol=4e-7)
    assert torch.equal(chunked[:, 3], chunked[:, 2]) and torch.equal(chunked[:, 7], chunked[:, 2])
    assert torch.equal(whole[:, 3], whole[:, 2]) and torch.equal(whole[:, 7], whole[:, 2])
    positive = np.arange(37) % 11
    for rule in RULES:
        metrics = retrieval_metrics(chunked.numpy(), positive, ties=rule)
        assert metrics == retrieval_metrics(whole.numpy().astype(np.float64), positive, ties=rule)
        assert metrics["queries_with_ties"] >= 9  # the queries of videos 2, 3, 7 at least


def test_a_tied_maximum_needs_no_fallback_in_the_chunked_scores(monkeypatch):
    """prvr_scores uses reference_branch_scores for a whole branch when any max over tokens is tied
    (for amax's gradient); here only the last query meets a tie (video 0's two copies of e1), in the
    third chunk of two queries. Without a gradient the tied maximum has one value, so the chunked
    version never calls the reference (at the TVR size, restarting a branch doubled its time) and
    agrees with prvr_scores to float32 rounding, the tied score included."""
    e = torch.eye(4)
    frame = torch.stack([torch.stack([e[0], e[0], e[1]]), torch.stack([e[2], e[3], e[1] + e[2]])])  # (2, 3, 4)
    clip = torch.stack([e[:2] + 0.1 * e[2:], e[2:] + 0.2 * e[:2]])  # (2, 2, 4)
    query = torch.stack([e[1] + 0.1 * e[2], e[1] + 0.2 * e[3], e[2] + 0.3 * e[1], e[3] + 0.1 * e[1],
                         e[1] + 0.1 * e[0], e[0] + 0.05 * e[3]])  # the last: frames 0 and 1 of video 0 tie
    calls = []
    real = scoring.reference_branch_scores

    def spy(q, tokens, normalize=True, token_mask=None):
        calls.append((q.shape[0], tokens.shape[1]))
        return real(q, tokens, normalize, token_mask)
    monkeypatch.setattr(scoring, "reference_branch_scores", spy)
    whole = prvr_scores(query, clip, frame)
    assert calls == [(6, 3)]  # the fallback of prvr_scores: the frame branch, every query
    calls.clear()
    chunked = prvr_scores_chunked(query, clip, frame, query_chunk=2)
    assert calls == []
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-7)
    unit_query = F.normalize(query[5], dim=0)  # its cosine with e0 (frames 0 and 1 of video 0): 1 / |q|
    tied = 0.4 * (F.normalize(clip[0], dim=-1) @ unit_query).max() + 0.6 / query[5].norm()
    assert chunked[5, 0].item() == pytest.approx(tied.item(), abs=1e-7)


def _split(tmp_path, n_videos=8, frames=6, dim=8, duplicate=True, half=False):
    """A split whose videos 5 and 6 copy videos 1 and 2; values float16-exact with `half`."""
    rng = np.random.default_rng(1)
    videos, tokens, lines = {}, {}, []
    for i in range(n_videos):
        feats = rng.normal(size=(frames if half else int(rng.integers(3, 12)), dim)).astype(np.float32)
        videos[f"v{i}"] = feats
        for k in range(3):
            cid = f"v{i}#enc#{k}"
            tokens[cid] = (feats.mean(0) + 0.5 * rng.normal(size=(int(rng.integers(2, 7)), dim))).astype(np.float32)
            lines.append(f"{cid} caption {k}\n")
    if duplicate:
        videos["v5"], videos["v6"] = videos["v1"], videos["v2"]
    if half:
        videos = {k: v.astype(np.float16).astype(np.float32) for k, v in videos.items()}
        tokens = {k: v.astype(np.float16).astype(np.float32) for k, v in tokens.items()}
    (tmp_path / "split.txt").write_text("".join(lines))
    write_features(tmp_path / "video.h5", videos.items())
    write_features(tmp_path / "text.h5", tokens.items())
    return tmp_path / "split.txt", tmp_path / "video.h5", tmp_path / "text.h5"


MODEL = ModelConfig(name="gmmformer_v2", input_dim=8, hidden=16, heads=2, frame_tokens=6, clip_tokens=3)


class IntegerModel(torch.nn.Module):
    """A stand-in encoder with small integer outputs (exact dot products): copied videos get equal
    tokens and tie exactly, whatever shapes the scoring's matrix products have. Tokens differ by
    position (a short video's repeated frames would tie inside the max and take the fallback)."""

    def encode_videos(self, frames):
        n, d = frames.shape[1:]
        tokens = torch.round(8 * frames) + torch.arange(n)[:, None] * torch.arange(1, d + 1)  # (B, Nf, D)
        return {"frame_tokens": tokens, "clip_tokens": tokens[:, ::2] + 2 * tokens[:, 1::2]}

    def encode_queries(self, feats, mask):
        return {"query": torch.round((feats * mask[..., None]).sum(1))}


def _unchunked_metrics(model, dataset, cfg):
    """The evaluation as it was: prvr_scores over every query and video at once (near ties settled
    on prvr_scores in float64, as the evaluation settles them on its own scores)."""
    model.eval()
    videos = evaluate.encode_videos(model, dataset, cfg.batch_size, "cpu")
    queries = evaluate.encode_queries(model, dataset, cfg.batch_size, "cpu")
    clip, frame = videos["clip_tokens"], videos["frame_tokens"]
    scores = prvr_scores(queries, clip, frame, w_clip=cfg.w_clip, w_frame=cfg.w_frame).numpy().astype(np.float64)
    index = {v: i for i, v in enumerate(dataset.index.videos)}
    positive = np.array([index[c.split("#")[0]] for c in dataset.index.caption_ids])
    exact = lambda q, c: prvr_scores(queries[q:q + 1].double(), clip[c].double(), frame[c].double(),  # noqa: E731
                                     w_clip=cfg.w_clip, w_frame=cfg.w_frame)[0].numpy()
    settle_near_ties(scores, positive, exact, cfg.tie_tolerance)
    return retrieval_metrics(scores, positive, ks=tuple(cfg.ks), ties=cfg.ties)


@pytest.mark.parametrize("ties", RULES)
@pytest.mark.parametrize("integer", [False, True], ids=["gmmformer_v2", "integer_ties"])
def test_evaluate_split_in_chunks_equals_the_unchunked_evaluation(tmp_path, monkeypatch, ties, integer):
    dataset = PRVRDataset(*_split(tmp_path, duplicate=integer), frame_tokens=6)
    model = IntegerModel() if integer else create_model(MODEL, seed=0)
    cfg = EvalConfig(ks=(1, 2, 5), ties=ties, batch_size=4)
    calls = []
    real = scoring.reference_branch_scores
    monkeypatch.setattr(scoring, "reference_branch_scores", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    reference = _unchunked_metrics(model, dataset, cfg)
    assert (reference["queries_with_ties"] >= 12) == integer  # the captions of v1, v2, v5, v6 at least
    assert not calls  # no tie inside a max over tokens (the fallback has its own test)
    for chunk, block in ((1, 1), (4, 40), (5, 1 << 21), (24, 1 << 21)):
        monkeypatch.setattr(scoring, "QUERY_CHUNK", chunk)
        monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", block)
        assert evaluate.evaluate_split(model, dataset, cfg) == reference, (chunk, block)


def _rounding_by_position(real):
    """_cosine_block_maxima as a CPU whose matrix kernels round edge tiles differently: the result
    for the video at position i of a block is off by (i mod 3) float32 ulps, so identical videos
    score apart unless they sit at positions with the same remainder (an Intel Xeon did this with
    MKL's and oneDNN's kernels)."""
    def rounded(query, unit_tokens, inv_query):
        out = real(query, unit_tokens, inv_query)  # (Q, B)
        ulps = torch.arange(out.shape[1], dtype=torch.float32).remainder(3)  # (B,)
        return out * (1 + ulps * 2.0 ** -23)
    return rounded


@pytest.mark.parametrize("ties", RULES)
def test_ties_do_not_depend_on_where_a_pair_was_scored(tmp_path, monkeypatch, ties):
    """Copies of a video tie at every chunk and block size even when the kernels round a pair's
    score by its position in a block: near ties are recomputed in float64 (prvr.evaluation.ties)."""
    dataset = PRVRDataset(*_split(tmp_path, duplicate=True), frame_tokens=6)
    cfg = EvalConfig(ks=(1, 2, 5), ties=ties, batch_size=4)
    reference = _unchunked_metrics(IntegerModel(), dataset, cfg)
    assert reference["queries_with_ties"] >= 12
    monkeypatch.setattr(scoring, "_cosine_block_maxima", _rounding_by_position(scoring._cosine_block_maxima))
    for chunk, block in ((1, 1), (4, 40), (5, 1 << 21), (24, 1 << 21), (7, 13)):
        monkeypatch.setattr(scoring, "QUERY_CHUNK", chunk)
        monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", block)
        assert evaluate.evaluate_split(IntegerModel(), dataset, cfg) == reference, (chunk, block)


def test_cache_backed_split_evaluates_like_the_stores_when_nothing_rounds(tmp_path, monkeypatch):
    """frame_tokens = the frame count (resampling is the identity) and float16-exact features: the
    cache holds the stores' numbers exactly, so the metrics are the same to the bit."""
    paths = _split(tmp_path, half=True)
    cache = build_feature_cache(tmp_path / "cache", [paths[0]], paths[1], paths[2], frame_tokens=6, max_query_len=77)
    stores = PRVRDataset(*paths, frame_tokens=6)
    cached = PRVRDataset.from_cache(cache, paths[0], MODEL)
    model = create_model(MODEL, seed=1)
    monkeypatch.setattr(scoring, "QUERY_CHUNK", 4)
    cfg = EvalConfig(batch_size=4)
    s_stores, p_stores = evaluate.split_scores(model, stores, cfg)
    s_cached, p_cached = evaluate.split_scores(model, cached, cfg)
    assert np.array_equal(s_stores, s_cached) and np.array_equal(p_stores, p_cached)
    assert evaluate.evaluate_split(model, cached, cfg) == evaluate.evaluate_split(model, stores, cfg)


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_queries_encoded_in_length_order_come_back_in_split_order(tmp_path, name):
    """encode_queries batches captions by length (less padding) and returns them in the split's
    caption order: every registered model's query vectors equal encoding each caption alone, to
    float32 rounding; a cache-backed split takes the lengths from the cache's offsets."""
    paths = _split(tmp_path, half=True)
    stores = PRVRDataset(*paths, frame_tokens=6)
    model = create_model(dataclasses.replace(MODEL, name=name), seed=2).eval()
    keys = model_scores.query_keys(evaluate.score_branches(model))
    got = evaluate.encode_queries(model, stores, 5, "cpu", keys)
    with torch.no_grad():
        for i, caption in enumerate(stores.index.caption_ids):
            tokens = torch.from_numpy(stores.queries[caption])[None]  # (1, L, D)
            alone = model.encode_queries(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool))
            alone = alone if isinstance(alone, dict) else {"query": alone}
            for key in keys:
                torch.testing.assert_close(got[key][i], alone[key][0], rtol=1e-5, atol=1e-6)
    lengths = evaluate.query_lengths(stores.queries, stores.index.caption_ids)
    assert len(set(lengths.tolist())) > 3  # mixed lengths: the order differs from the split's
    cache = build_feature_cache(tmp_path / "cache", [paths[0]], paths[1], paths[2], frame_tokens=6, max_query_len=77)
    cached = PRVRDataset.from_cache(cache, paths[0], MODEL)
    assert np.array_equal(evaluate.query_lengths(cached.queries, cached.index.caption_ids), lengths)
