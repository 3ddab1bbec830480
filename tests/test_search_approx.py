"""prvr.search.approx: the approximate first stage (faiss) ranks its candidates exactly (the scores and
ties by id of an exact search), finds the exact top k when it fetches every token, keeps a long
video's rows together, is saved beside the index and rebuilt when the index changes, and bad
settings are one line."""
import builtins
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prvr.errors import PrvrError
from prvr.models.base import MAX_CLIP_AND_FRAME as BRANCHES
from prvr.models.base import ScoreBranch
from prvr.search import approx
from prvr.search.approx import (ApproxOptions, approx_stage, approx_top_k_rows, build_stage, candidate_videos,
                                factory_for)
from prvr.search.fast_scores import exact_top_k_rows, inverse_norms, pairwise_scores
from prvr.search.searcher import ranking

pytest.importorskip("faiss")
WEIGHTS = (0.4, 0.6)


def _index(n_videos=400, rows_per_video=1, seed=0, folder=None, dim=32):
    """Clustered tokens (topic + video + noise) as a LoadedIndex holds them, every video's rows together."""
    g = torch.Generator().manual_seed(seed)
    rows = n_videos * rows_per_video
    topics = torch.randn(max(1, n_videos // 20), dim, generator=g)
    base = topics[torch.randint(len(topics), (n_videos,), generator=g)] + torch.randn(n_videos, dim, generator=g)
    base = base.repeat_interleave(rows_per_video, 0)  # (R, H)
    tokens = {"frame_tokens": (base[:, None] + torch.randn(rows, 8, dim, generator=g)).half(),
              "clip_tokens": (base[:, None] + torch.randn(rows, 3, dim, generator=g)).half()}
    return SimpleNamespace(folder=folder, tokens=tokens, inv_norms={k: inverse_norms(t) for k, t in tokens.items()},
                           ids=[f"v{i:04d}" for i in range(n_videos)],
                           row_video=torch.arange(n_videos).repeat_interleave(rows_per_video))


def _query(index, video, seed=1):
    """A query near one frame token of `video` (as a caption describes one moment)."""
    g = torch.Generator().manual_seed(seed)
    token = index.tokens["frame_tokens"][int(torch.nonzero(index.row_video == video)[0]), 2].float()
    return {"query": (token / token.norm() + 0.5 * torch.randn(token.shape, generator=g) / token.shape[0] ** 0.5)[None]}


def _exact(index, query, k):
    return exact_top_k_rows(query, index.tokens, index.inv_norms, BRANCHES, WEIGHTS, k, index.ids, ranking,
                            index.row_video)


def test_factory_follows_the_size():
    assert factory_for(10_000, 384) == "Flat"
    assert factory_for(100_000 * 160, 384) == "IVF1024,PQ48"  # sqrt(16M) / 4 = 1,000 lists; 384 / 8 bytes
    assert factory_for(10_000 * 160, 384) == "IVF256,PQ48"
    assert factory_for(1_000_000, 100) == "IVF256,PQ10"  # sub-quantisers divide the dimension


def test_every_token_fetched_gives_the_exact_top_k_and_scores():
    index = _index()
    stage = build_stage(index.tokens, index.inv_norms, BRANCHES)
    assert stage.factory == "Flat"
    all_tokens = len(index.row_video) * 8
    for video in (0, 17, 399):
        query = _query(index, video)
        order, scores, _ = approx_top_k_rows(query, index, BRANCHES, WEIGHTS, 10, ranking, stage, all_tokens)
        exact_order, exact_scores, _ = _exact(index, query, 10)
        assert order == exact_order
        assert torch.equal(scores[order], exact_scores[exact_order])


def test_candidates_are_ranked_exactly_with_ties_by_id():
    index = _index(200)
    for key in index.tokens:  # v0150 a copy of v0003: equal scores, the smaller id first
        index.tokens[key][150] = index.tokens[key][3]
        index.inv_norms[key][150] = index.inv_norms[key][3]
    stage = build_stage(index.tokens, index.inv_norms, BRANCHES)
    query = _query(index, 3)
    order, scores, _ = approx_top_k_rows(query, index, BRANCHES, WEIGHTS, 5, ranking, stage, n_tokens=40)
    assert order[:2] == [3, 150] and scores[3] == scores[150]
    computed = torch.nonzero(~torch.isnan(scores)).squeeze(1)
    assert len(computed) < 200  # only candidates were scored
    expected = pairwise_scores(query, index.tokens, BRANCHES, WEIGHTS, torch.tensor(order))
    torch.testing.assert_close(scores[order], expected, rtol=0, atol=0)
    assert all(scores[a] >= scores[b] for a, b in zip(order, order[1:]))


def test_a_long_videos_windows_stay_together():
    index = _index(120, rows_per_video=3)  # every video three windows
    stage = build_stage(index.tokens, index.inv_norms, BRANCHES)
    query = _query(index, 40)
    order, scores, row_scores = approx_top_k_rows(query, index, BRANCHES, WEIGHTS, 3, ranking, stage, n_tokens=12)
    for video in order:  # every window of a candidate scored, the video's score their max
        rows = torch.nonzero(index.row_video == video).squeeze(1)
        assert not torch.isnan(row_scores[rows]).any() and scores[video] == row_scores[rows].max()
    exact_order, exact_scores, _ = _exact(index, query, 3)
    assert order[0] == exact_order[0] == 40


def test_too_few_videos_fetch_more_tokens():
    index = _index(50, rows_per_video=4)
    stage = build_stage(index.tokens, index.inv_norms, BRANCHES)
    videos = candidate_videos(_query(index, 7), stage, BRANCHES, index.row_video, n_tokens=1, want=10)
    assert len(videos) >= 10


def test_ivf_pq_recall_on_clustered_tokens():
    index = _index(3000, dim=32)
    stage = build_stage(index.tokens, index.inv_norms, BRANCHES, "IVF32,PQ8")
    recalls = []
    for video in range(0, 3000, 150):
        query = _query(index, video, seed=video)
        order = approx_top_k_rows(query, index, BRANCHES, WEIGHTS, 10, ranking, stage, 256, 8)[0]
        exact = _exact(index, query, 10)[0]
        assert order[0] == exact[0]
        recalls.append(len(set(order) & set(exact)) / 10)
    assert np.mean(recalls) >= 0.9


def test_the_stage_is_saved_and_rebuilt_when_the_index_changes(tmp_path, monkeypatch):
    (tmp_path / "index.json").write_text(json.dumps({"videos": {}}))
    index = _index(100, folder=tmp_path)
    first = approx_stage(index, BRANCHES)
    saved = json.loads((tmp_path / "approx/approx.json").read_text())
    assert saved["factory"] == "Flat" and sorted(p.name for p in (tmp_path / "approx").glob("*.faiss")) == [
        "clip_tokens.faiss", "frame_tokens.faiss"]
    monkeypatch.setattr(approx, "build_stage", lambda *a, **k: pytest.fail("rebuilt an unchanged index"))
    again = approx_stage(index, BRANCHES)
    assert again.indexes["frame_tokens"].ntotal == first.indexes["frame_tokens"].ntotal == 800
    monkeypatch.undo()
    (tmp_path / "index.json").write_text(json.dumps({"videos": {"new": {}}}))
    built = []
    monkeypatch.setattr(approx, "build_stage", lambda *a, **k: built.append(1) or first)
    approx_stage(index, BRANCHES)
    assert built == [1]


def test_bad_settings_are_one_line(monkeypatch):
    index = _index(40)
    with pytest.raises(PrvrError, match="--approx-factory 'IVF9,Nope'"):
        build_stage(index.tokens, index.inv_norms, BRANCHES, "IVF9,Nope")
    with pytest.raises(PrvrError, match="too few to train 4096 lists"):
        build_stage(index.tokens, index.inv_norms, BRANCHES, "IVF4096,Flat")
    guided = (BRANCHES[0], ScoreBranch("frame", "query", "frame_tokens", guide_key="clip_tokens"))
    with pytest.raises(PrvrError, match="plain max-cosine score branches"):
        build_stage(index.tokens, index.inv_norms, guided)
    with pytest.raises(PrvrError, match="must be >= 1"):
        ApproxOptions(tokens=0)
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "faiss" else real_import(name, *a, **k))
    with pytest.raises(PrvrError, match="pip install faiss-cpu"):
        build_stage(index.tokens, index.inv_norms, BRANCHES)
