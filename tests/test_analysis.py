"""Collapse analysis glue: token intervals, moment labels, and the record on constructed embeddings
(perfectly separated events vs. fully collapsed videos)."""

import numpy as np
import pytest

from prvr.sources.annotations import Query
from prvr.store.resample import resample_frames
from prvr.store.splits import SplitIndex
from prvr.evaluation import analysis
from prvr.evaluation.analysis import (AnalysisError, collapse_record, figure_points, split_moments,
                                      token_intervals)


def test_token_intervals_by_hand():
    # 6 -> 3: edges 0, 2, 4, 6 -> 5: frames {0, 1}, {2, 3}, {4}; frame 5 in no token
    np.testing.assert_allclose(token_intervals(6, 3), [[0, 2 / 6], [2 / 6, 4 / 6], [4 / 6, 5 / 6]])
    # 2 -> 4: i * 2 / 4 = 0, .5, 1, 1.5 -> 0, 0, 1, 2 -> 1 (half to even, clamped): frames 0, 0, 1, 1
    np.testing.assert_allclose(token_intervals(2, 4), [[0, .5], [0, .5], [.5, 1], [.5, 1]])
    # 3 -> 6: 0, .5, 1, 1.5, 2, 2.5 -> frames 0, 0, 1, 2, 2, 2 (floor would give 0, 0, 1, 1, 2, 2)
    third = 1 / 3
    np.testing.assert_allclose(token_intervals(3, 6), [[0, third], [0, third], [third, 2 * third],
                                                      [2 * third, 1], [2 * third, 1], [2 * third, 1]])
    np.testing.assert_allclose(token_intervals(4, 4), [[0, .25], [.25, .5], [.5, .75], [.75, 1]])
    with pytest.raises(AnalysisError):
        token_intervals(0, 4)


def test_token_intervals_37_and_200_frames_to_128_tokens():
    """Hand rule (Python's round is half to even, like the authors' torch.round): T = 37 < 128: token i
    is frame min(round(i 37 / 128), 36); T = 200 > 128: frames round(i 200 / 128)..next edge - 1, the
    last edge clamped to 199, so frame 199 is in no token."""
    frames_37 = [min(round(i * 37 / 128), 36) for i in range(128)]
    expected = np.array([[f, f + 1] for f in frames_37]) / 37
    np.testing.assert_allclose(token_intervals(37, 128), expected)
    assert frames_37[64] == 18  # 18.5 -> 18
    edges = [round(i * 200 / 128) for i in range(128)] + [199]
    expected = np.array([[edges[i], edges[i + 1]] for i in range(128)]) / 200
    got = token_intervals(200, 128)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got[-1], [198 / 200, 199 / 200])  # frame 198 alone


@pytest.mark.parametrize("n_frames,n_tokens", [(37, 8), (8, 8), (5, 8), (100, 32), (3, 6), (37, 128),
                                               (200, 128), (129, 128), (95, 10), (1, 4)])
def test_token_intervals_match_resampling(n_frames, n_tokens):
    """Token j of resample_frames is the mean of exactly the frames inside its interval."""
    feats = np.random.default_rng(0).normal(size=(n_frames, 3))
    tokens = resample_frames(feats, n_tokens)
    frame_centres = (np.arange(n_frames) + 0.5) / n_frames
    for j, (start, end) in enumerate(token_intervals(n_frames, n_tokens)):
        held = (frame_centres >= start) & (frame_centres < end)
        assert held.any()
        np.testing.assert_allclose(tokens[j], feats[held].mean(axis=0), rtol=1e-5)


def _split():
    """Video a (8 s, 8 frames): events [0, 4) and [4, 8), plus one overlapping [2, 6); video b (4 s)."""
    rows = [("a", 0, 4, "red"), ("a", 4, 8, "blue"), ("a", 2, 6, "red"), ("b", 0, 2, "red"), ("b", 2, 4, "green")]
    queries, captions = {}, {"a": [], "b": []}
    for k, (vid, start, end, _) in enumerate(rows):
        cid = f"{vid}#enc#{len(captions[vid])}"
        captions[vid].append(cid)
        queries[cid] = Query(vid, 8.0 if vid == "a" else 4.0, start, end, f"q{k}", k, cid)
    index = SplitIndex(["a", "b"], captions, {c: "" for c in queries})
    kinds = {"a#enc#0": "red", "a#enc#1": "blue", "a#enc#2": "red", "b#enc#0": "red", "b#enc#1": "green"}
    return index, queries, kinds


def test_split_moments_labels():
    index, queries, kinds = _split()
    m = split_moments(index, queries, {"a": 8, "b": 4}, n_tokens=4,
                      labels={c: {"kind": k, "video": c[0]} for c, k in kinds.items()})
    assert m.query_video.tolist() == [0, 0, 0, 1, 1]
    # video a: tokens [0,2) [2,4) [4,6) [6,7) s (frame 7 in no token), centres 1 3 5 6.5
    assert m.inside[0].tolist() == [True, True, False, False]
    assert m.inside[2].tolist() == [False, True, True, False]
    assert m.overlap[2].tolist() == [False, True, True, False]  # [2, 6) touches [0,2) only at 2
    # video b: tokens of 1 s, centres .5 1.5 2.5 3.5
    assert m.inside[4].tolist() == [False, False, True, True]
    # siblings: same video, disjoint moments (the overlapping query 2 is nobody's sibling)
    expected = np.zeros((5, 5), bool)
    expected[0, 1] = expected[1, 0] = expected[3, 4] = expected[4, 3] = True
    np.testing.assert_array_equal(m.sibling, expected)
    # same kind, other video: "red" of a (0 and 2) with "red" of b (3)
    assert np.argwhere(m.same_label["kind"]).tolist() == [[0, 3], [2, 3], [3, 0], [3, 2]]
    assert not m.same_label["video"].any()  # same value only within a video: never "other video"


def test_split_moments_errors():
    index, queries, _ = _split()
    with pytest.raises(AnalysisError, match="not in the annotations"):
        split_moments(index, {k: v for k, v in queries.items() if k != "b#enc#1"}, {"a": 8, "b": 4}, 4)
    no_duration = dict(queries, **{"a#enc#0": Query("a", None, 0, 4, "x", 0, "a#enc#0")})
    with pytest.raises(AnalysisError, match="a#enc#0.*duration"):
        split_moments(index, no_duration, {"a": 8, "b": 4}, 4)
    with pytest.raises(AnalysisError, match="a#enc#1 has no entry"):
        split_moments(index, queries, {"a": 8, "b": 4}, 4, labels={"a#enc#0": {"kind": "red"}})


def _events_split(n_videos=6, events=3, tokens_per_event=4):
    """Videos of back-to-back events; event kinds cycle so kinds recur across videos."""
    captions, queries, kinds = {}, {}, {}
    n_tokens = events * tokens_per_event
    for v in range(n_videos):
        vid = f"v{v}"
        captions[vid] = [f"{vid}#enc#{e}" for e in range(events)]
        for e, cid in enumerate(captions[vid]):
            queries[cid] = Query(vid, float(events), e, e + 1, cid, v * events + e, cid)
            kinds[cid] = f"kind{(v + e) % 4}"
    index = SplitIndex(list(captions), captions, {c: "" for c in queries})
    labels = {c: {"kind": k} for c, k in kinds.items()}
    moments = split_moments(index, queries, {v: n_tokens for v in captions}, n_tokens, labels)
    return moments, kinds, n_tokens


def test_record_separated_vs_collapsed():
    moments, kinds, n_tokens = _events_split()
    rng = np.random.default_rng(0)
    kind_vec = {k: rng.normal(size=16) for k in sorted(set(kinds.values()))}
    event_vec = np.stack([kind_vec[k] for k in kinds.values()])  # (Q, 16): one vector per event
    frames = np.repeat(event_vec.reshape(6, 3, 16), n_tokens // 3, axis=1)  # (V, N, 16)
    frames = frames + 0.01 * rng.normal(size=frames.shape)
    queries = event_vec + 0.01 * rng.normal(size=event_vec.shape)
    teacher = rng.normal(size=(len(queries), 8))
    good = collapse_record(queries, frames, teacher, moments)
    assert good["frame_hit"] == 1.0
    assert good["frame_hit_chance"] == pytest.approx(4 / 12)
    assert good["frame_contrast"] > 0.5
    assert good["text_same_kind_pct"] > 0.9 and good["video_same_kind_pct"] > 0.9
    # Collapse: every token of a video is the video's mean, every caption its video's mean.
    collapsed_frames = np.repeat(frames.mean(axis=1, keepdims=True), n_tokens, axis=1)
    video_means = event_vec.reshape(6, 3, 16).mean(axis=1)
    collapsed_queries = video_means[moments.query_video] + 1e-3 * rng.normal(size=queries.shape)
    bad = collapse_record(collapsed_queries, collapsed_frames, teacher, moments)
    assert bad["frame_contrast"] == pytest.approx(0.0, abs=1e-9)
    assert bad["frame_hit"] == pytest.approx(bad["frame_hit_chance"])  # all tokens tie
    # captions of one video's different events become each other's nearest; kinds no longer meet
    assert bad["text_sibling_pct"] > 0.85 and good["text_sibling_pct"] < 0.5
    assert bad["text_same_kind_pct"] < 0.6 and bad["video_same_kind_pct"] < 0.6


def test_record_chunked_equals_whole(monkeypatch):
    moments, _, n_tokens = _events_split(n_videos=5)
    rng = np.random.default_rng(1)
    frames, queries = rng.normal(size=(5, n_tokens, 8)), rng.normal(size=(15, 8))
    clips, frame_to_clip = rng.normal(size=(5, 3, 8)), np.repeat(np.arange(3), n_tokens // 3)[None].repeat(5, 0)
    whole = collapse_record(queries, frames, queries, moments, clips, frame_to_clip)
    monkeypatch.setattr(analysis, "QUERY_CHUNK", 4)
    chunked = collapse_record(queries, frames, queries, moments, clips, frame_to_clip)
    assert set(whole) == set(chunked)
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=1e-12), key
    assert whole["text_teacher_corr"] == pytest.approx(1.0)
    assert whole["clip_hit_chance"] == pytest.approx(1 / 3)


def test_figure_points_labels():
    moments, _, n_tokens = _events_split(n_videos=3)
    emb = {"frame_tokens": np.arange(3 * n_tokens * 2, dtype=float).reshape(3, n_tokens, 2),
           "queries": np.arange(9 * 2, dtype=float).reshape(9, 2)}
    points = figure_points(emb, moments, [2, 0])
    assert points["frame_video"].tolist() == [0] * n_tokens + [1] * n_tokens
    assert points["frame_event"][:n_tokens].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(points["frame_tokens"][:n_tokens], emb["frame_tokens"][2])
    assert points["query_event"].tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(points["queries"][:3], emb["queries"][6:9])
