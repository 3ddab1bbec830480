"""t-SNE collapse figure: tsne_2d shape/determinism/separation, atomic PNG output, bad input, video choice;
the side-by-side figure of two models (PNG + PDF, the legends, the same videos in every row)."""
import numpy as np
import pytest

from prvr.reporting.figures import collapse_figure, compare_figure, pick_videos, tsne_2d


def _two_clusters(n_per_cluster=20, dim=16, seed=0):
    """Two Gaussian clusters whose centres point in different directions (cosine metric sees them)."""
    rng = np.random.default_rng(seed)
    centre_a, centre_b = np.zeros(dim), np.zeros(dim)
    centre_a[0], centre_b[1] = 10.0, 10.0
    points = np.concatenate([centre_a + rng.normal(size=(n_per_cluster, dim)),
                             centre_b + rng.normal(size=(n_per_cluster, dim))])  # (2n, dim)
    labels = np.repeat([0, 1], n_per_cluster)  # (2n,)
    return points, labels


def _panel(n_videos, per_video=8, dim=12, seed=0):
    """Points, video labels and event labels (-1, 0, 1 cycled) for `n_videos` videos."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n_videos * per_video, dim))  # (N, dim)
    video = np.repeat(np.arange(n_videos), per_video)  # (N,)
    event = np.tile(np.arange(per_video) % 3 - 1, n_videos)  # (N,)
    return points, video, event


def test_tsne_shape_and_determinism():
    points, _ = _two_clusters()
    first = tsne_2d(points, seed=3)
    assert first.shape == (40, 2) and first.dtype == np.float64
    np.testing.assert_array_equal(first, tsne_2d(points, seed=3))


def test_tsne_small_n_works():
    points = np.random.default_rng(1).normal(size=(8, 5))  # (8, 5)
    out = tsne_2d(points)
    assert out.shape == (8, 2) and np.all(np.isfinite(out))


def test_tsne_too_few_points():
    with pytest.raises(ValueError, match="at least 5 points, got 4"):
        tsne_2d(np.ones((4, 3)) + np.eye(4, 3))


def test_tsne_keeps_separated_clusters_apart():
    points, labels = _two_clusters()
    xy = tsne_2d(points)  # (40, 2)
    dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)  # (40, 40)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(axis=1)  # (40,)
    assert np.all(labels[nearest] == labels)


def test_collapse_figure_writes_png_atomically(tmp_path):
    tokens, t_video, t_event = _panel(3)
    queries, q_video, q_event = _panel(3, per_video=4, seed=1)
    out = tmp_path / "figures" / "nested" / "collapse.png"
    collapse_figure(tokens, t_video, t_event, queries, q_video, q_event, out, title="baseline")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["collapse.png"]


def test_collapse_figure_label_length_mismatch(tmp_path):
    tokens, t_video, t_event = _panel(2)
    queries, q_video, q_event = _panel(2, seed=1)
    with pytest.raises(ValueError, match="frame_event"):
        collapse_figure(tokens, t_video, t_event[:-1], queries, q_video, q_event,
                        tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="query_video"):
        collapse_figure(tokens, t_video, t_event, queries, q_video[:-2], q_event,
                        tmp_path / "x.png", title="t")
    assert list(tmp_path.iterdir()) == []


def test_collapse_figure_rejects_eleven_videos(tmp_path):
    tokens, t_video, t_event = _panel(11, per_video=2)
    queries, q_video, q_event = _panel(11, per_video=1, seed=1)
    with pytest.raises(ValueError, match="at most 10 videos"):
        collapse_figure(tokens, t_video, t_event, queries, q_video, q_event,
                        tmp_path / "x.png", title="t")
    assert list(tmp_path.iterdir()) == []


def test_pick_videos_ties_by_id():
    counts = {"v5": 2, "v3": 4, "v9": 4, "v1": 2, "v2": 1, "v7": 4}
    # Most events: v3, v7, v9 (4 each); the last place is a tie at 2 between v1 and v5 -> v1.
    assert pick_videos(counts, 4) == ["v1", "v3", "v7", "v9"]
    assert pick_videos(counts, 2) == ["v3", "v7"]
    assert pick_videos(counts, 100) == ["v1", "v2", "v3", "v5", "v7", "v9"]


def test_pick_videos_bad_input():
    with pytest.raises(ValueError, match="k"):
        pick_videos({"a": 1}, 0)
    with pytest.raises(ValueError, match="event_counts"):
        pick_videos({}, 3)


def test_missing_analysis_extra_is_one_line(monkeypatch):
    import importlib.util

    from prvr.errors import PrvrError
    from prvr.reporting.figures import require_analysis_extra
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(PrvrError, match=r"^t-SNE figures need sklearn: pip install -e '.\[analysis\]'"):
        require_analysis_extra()


def _points(n_videos, seed):
    tokens, t_video, t_event = _panel(n_videos, seed=seed)
    queries, q_video, q_event = _panel(n_videos, per_video=4, seed=seed + 1)
    return {"frame_tokens": tokens, "frame_video": t_video, "frame_event": t_event,
            "queries": queries, "query_video": q_video, "query_event": q_event}


def test_compare_figure_writes_png_and_pdf_with_legends(tmp_path, monkeypatch):
    """Two rows of two panels; the legends name every video and say what colour and marker mean."""
    from matplotlib.figure import Figure
    saved = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), real_savefig(fig, *a, **k))[1])
    out = tmp_path / "figs" / "tsne_compare.png"
    compare_figure({"baseline": _points(3, 0), "adaptive": _points(3, 5)}, out, title="test split",
                   video_names=["a", "b", "c"])
    assert out.read_bytes()[:4] == b"\x89PNG" and out.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tsne_compare.pdf", "tsne_compare.png"]
    axes = saved[0].axes
    assert [ax.get_title() for ax in axes] == ["baseline: video frame tokens", "baseline: queries",
                                               "adaptive: video frame tokens", "adaptive: queries"]
    legends = {ax.get_legend().get_title().get_text(): [t.get_text() for t in ax.get_legend().get_texts()]
               for ax in axes if ax.get_legend()}
    assert legends == {"marker: event in its video": ["event 1", "event 2", "outside any event"],
                       "colour: video": ["a", "b", "c"]}


def test_compare_figure_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least 2 models, got 1"):
        compare_figure({"baseline": _points(3, 0)}, tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="the same videos"):
        compare_figure({"baseline": _points(3, 0), "adaptive": _points(2, 5)}, tmp_path / "x.png", title="t")
    assert list(tmp_path.iterdir()) == []
