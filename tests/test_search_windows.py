"""prvr.search.windows: long videos as overlapping windows. Hand-computed window starts and frames, the
settings' defaults and one-line errors, the max over a video's rows and the exact top k over videos
with several rows each (ties by id); on generated long videos (demo clips played one after another):
scores are the max over windows scored as separate videos, moments are in the long video's seconds,
short videos are unchanged, resume and extension rules hold, old indexes load, the CLI and
prvr.search.measure take windows, and bench/bench_long_videos.py runs (--small)."""
import math

import numpy as np
import pytest
import torch

from prvr.config import FramesConfig
from prvr.errors import PrvrError
from prvr.models.base import MAX_CLIP_AND_FRAME as BRANCHES
from prvr.search.fast_scores import exact_top_k, exact_top_k_rows, inverse_norms, pairwise_scores
from prvr.search.searcher import ranking
from prvr.search.windows import group_max, resolve_windows, window_frames, window_spans, window_starts

WEIGHTS = (0.4, 0.6)


@pytest.mark.parametrize("duration, window, stride, starts", [
    (100.0, 30.0, 20.0, [0, 20, 40, 60, 70]),   # 60 + 30 < 100: a last window ending at 100
    (90.0, 30.0, 20.0, [0, 20, 40, 60]),        # 60 + 30 = 90: the regular ones end exactly there
    (30.0, 30.0, 10.0, [0]),                    # no longer than a window: one window, the whole video
    (20.0, 30.0, 10.0, [0]),
    (31.0, 30.0, 30.0, [0, 1]),                 # no overlap asked; the last one is moved back to fit
    (10.0, 4.0, 4.0, [0, 4, 6]),
    (0.3, 0.1, 0.1, [0, 0.1, 0.2]),             # float noise: 0.3 - 0.1 = 0.19999..., still 3 windows
])
def test_window_starts_by_hand(duration, window, stride, starts):
    got = window_starts(duration, window, stride)
    np.testing.assert_allclose(got, starts, atol=1e-12)
    ends = np.minimum(got + window, duration)
    assert got[0] == 0 and math.isclose(ends[-1], duration)
    assert np.all(got[1:] <= ends[:-1])  # consecutive windows touch or overlap: nothing left out
    np.testing.assert_allclose(np.diff(got)[:-1], stride)  # the stated overlap, but for the last window


def test_window_frames_and_spans_by_hand():
    # 20 frames over 10 s: bins of 0.5 s, centres 0.25, 0.75, ..., 9.75; windows of 3 s every 2 s
    starts = window_starts(10.0, 3.0, 2.0)
    np.testing.assert_allclose(starts, [0, 2, 4, 6, 7])
    assert window_frames(20, 10.0, starts, 3.0) == [(0, 6), (4, 10), (8, 14), (12, 18), (14, 20)]
    # frames 4..9 (2 s .. 5 s) resampled to 3 tokens: edges [0, 2, 4, 5] -> frames {0,1}, {2,3}, {4}
    # (the authors' resampling drops the last frame), seen from the window then shifted by 2 s
    np.testing.assert_allclose(window_spans(4, 10, 0.5, 3), [[2.0, 3.0], [3.0, 4.0], [4.0, 4.5]])
    # fewer frames than tokens: each token is one frame, so the last token ends at the window's end
    np.testing.assert_allclose(window_spans(14, 20, 0.5, 8)[[0, -1]], [[7.0, 7.5], [9.5, 10.0]])
    assert window_frames(4, 10.0, [0.0], 1.0) == [(0, 1)]  # shorter than a bin: the nearest frame


def test_settings_defaults_and_bad_values_are_one_line():
    frames = FramesConfig(fps=2.0, max_frames=256)
    assert resolve_windows(frames, 32) == {"long_after": 128.0, "window": 16.0, "stride": 8.0, "fps": 2.0}
    assert resolve_windows(frames, 128)["window"] == 64.0
    assert resolve_windows(FramesConfig(fps=2.0, max_frames=20), 32, window=16)["fps"] == 20 / 16  # cap per window
    assert resolve_windows(FramesConfig(num_frames=10), 32, window=16)["fps"] == 10 / 16  # a window gets num_frames
    assert resolve_windows(frames, 32, long_after="off") is None
    assert resolve_windows(frames, 32, recorded=None, extending=True) is None  # an index made before windows
    recorded = {"long_after": 60.0, "window": 8.0, "stride": 8.0, "fps": 2.0}
    assert resolve_windows(frames, 32, recorded=recorded, extending=True) == recorded
    assert resolve_windows(frames, 32, stride=4, recorded=recorded, extending=True)["stride"] == 4  # then compared
    for bad in ({"window": 0}, {"window": -3}, {"window": "ten"}, {"stride": 20}, {"stride": float("nan")},
                {"long_after": 10}, {"long_after": float("inf")}, {"window": 0.1, "long_after": 1}):
        with pytest.raises(PrvrError) as err:
            resolve_windows(FramesConfig(fps=2.0), 32, **bad)
        assert "\n" not in str(err.value) and str(err.value).startswith("index: "), (bad, str(err.value))


def test_group_max_takes_the_first_best_row_and_skips_unscored_rows():
    values = torch.tensor([[0.1, 0.5, 0.5, 0.2, float("nan"), float("nan"), 0.3]], dtype=torch.float64)
    row_video = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    best, rows = group_max(values, row_video, 4)
    np.testing.assert_array_equal(best[0, :2].numpy(), [0.5, 0.2])
    assert math.isnan(best[0, 2]) and rows[0].tolist() == [1, 3, -1, 6]


def _rows_index(n_videos=80, seed=0):
    """Random float16 tokens of videos with 1..5 rows each, with exact copies (one also in another
    window order) and near ties."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 6, (n_videos,), generator=g)
    counts[[1, 11, 12, 13]] = 3
    row_video = torch.repeat_interleave(torch.arange(n_videos), counts)
    first = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    tokens = {"frame_tokens": torch.randn(len(row_video), 8, 32, generator=g).half(),
              "clip_tokens": torch.randn(len(row_video), 3, 32, generator=g).half()}
    for t in tokens.values():
        rows1 = t[first[1]:first[2]].clone()
        t[first[11]:first[12]] = rows1  # video 11: a copy of video 1
        t[first[12]:first[13]] = rows1.flip(0)  # video 12: the same windows in another order
        t[first[13]:first[14]] = rows1
        t[first[13]:first[14], 0, 0] += 0.001 if t is tokens["clip_tokens"] else 0  # 13: a near tie on one branch
    return tokens, {k: inverse_norms(t) for k, t in tokens.items()}, row_video, [f"v{i:03d}" for i in range(n_videos)]


@pytest.mark.parametrize("k", [1, 5, 30])
def test_top_k_over_videos_with_rows_equals_the_exhaustive_ranking(k):
    tokens, inv, row_video, ids = _rows_index()
    every = torch.arange(len(row_video))
    g = torch.Generator().manual_seed(1)
    queries = [torch.randn(1, 32, generator=g) for _ in range(15)] + [tokens["frame_tokens"][3, :1].float()]
    for q in queries:
        query = {"query": q}
        full_rows = pairwise_scores(query, tokens, BRANCHES, WEIGHTS, every)  # every row exactly
        full = group_max(full_rows, row_video, len(ids))[0].numpy()  # a video: the max over its rows
        order, scores, row_scores = exact_top_k_rows(query, tokens, inv, BRANCHES, WEIGHTS, k, ids, ranking, row_video)
        assert order == ranking(full, ids)[:k]
        np.testing.assert_array_equal(scores.numpy()[order], full[order])
        scored = ~torch.isnan(row_scores)
        np.testing.assert_array_equal(row_scores[scored].numpy(), full_rows[scored].numpy())
        assert exact_top_k(query, tokens, inv, BRANCHES, WEIGHTS, k, ids, ranking, row_video)[0] == order
    assert full[1] == full[11] == full[12] != full[13]  # copies tie to the bit, whatever their windows' order


def test_float32_rows_fall_back_to_scoring_every_row():
    tokens, _, row_video, ids = _rows_index()
    tokens = {k: t.float() for k, t in tokens.items()}
    inv = {k: inverse_norms(t) for k, t in tokens.items()}
    order, scores, row_scores = exact_top_k_rows({"query": torch.randn(1, 32)}, tokens, inv, BRANCHES, WEIGHTS, 5,
                                                 ids, ranking, row_video)
    assert not torch.isnan(row_scores).any() and not torch.isnan(scores).any()
    assert order == ranking(scores.numpy(), ids)[:5]
