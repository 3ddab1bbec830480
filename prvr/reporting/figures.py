"""t-SNE "semantic collapse" figure: do a video's events stay apart in embedding space?

Left panel: frame-token embeddings of a few test videos; right panel: their query (caption)
embeddings; each panel is embedded to 2-D with its own t-SNE. Colour = video, marker = event
within the video (small faint dots = tokens outside every event). Collapse shows as same-colour
points with different markers lying on top of each other; a model that keeps events apart shows
same-colour, different-marker groups as separate clumps.

    videos = pick_videos({"v1": 3, "v2": 5, "v3": 1}, k=2)          # ["v1", "v2"]
    collapse_figure(tokens, tok_video, tok_event, queries, q_video, q_event,
                    "results/figures/collapse_baseline.png", title="baseline")
    compare_figure({"baseline": points_a, "adaptive": points_b}, "results/figures/tsne_compare.png",
                   title="test split")   # the paper's figure: one row per model, same videos

`compare_figure` draws the paper's t-SNE figure: one row per configuration (the baseline above the
full method), the same videos in every row, each panel its own t-SNE; a PNG and a PDF beside it.

sklearn and matplotlib (the `analysis` extra) are imported only when a figure is made.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr.errors import PrvrError
from prvr.io import atomic_path

MAX_VIDEOS = 10  # tab10 has ten colours
EVENT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "p")
MIN_TSNE_POINTS = 5


def require_analysis_extra() -> None:
    """A one-line error when scikit-learn or matplotlib (the `analysis` extra) is missing."""
    import importlib.util
    missing = [name for name in ("sklearn", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise PrvrError(f"t-SNE figures need {' and '.join(missing)}: pip install -e '.[analysis]' "
                        f"(or run with --use-conda)")


def tsne_2d(points, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (cosine metric, PCA init) of `points` (N, H), deterministic.

    With PCA init sklearn's result does not depend on `seed` in practice; it is passed for safety.
    """
    require_analysis_extra()
    from sklearn.manifold import TSNE

    points = np.asarray(points, dtype=np.float64)  # (N, H)
    if points.ndim != 2:
        raise ValueError(f"points: expected a 2-D array (N, H), got shape {points.shape}")
    n_points = points.shape[0]
    if n_points < MIN_TSNE_POINTS:
        raise ValueError(f"t-SNE needs at least {MIN_TSNE_POINTS} points, got {n_points}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points: contains NaN or infinite values")
    # sklearn needs perplexity < N; capping it at (N - 1) / 3 lets small panels (N >= 5) work.
    tsne = TSNE(n_components=2, init="pca", random_state=seed, metric="cosine",
                perplexity=min(perplexity, (n_points - 1) / 3))
    return np.asarray(tsne.fit_transform(points), dtype=np.float64)  # (N, 2)


def _check_panel(name: str, points, video, event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays of one panel, with one-line errors for bad shapes or labels."""
    points = np.asarray(points, dtype=np.float64)  # (N, H)
    video = np.asarray(video)  # (N,)
    event = np.asarray(event)  # (N,)
    if points.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (N, H), got shape {points.shape}")
    for label, values in ((f"{name}_video", video), (f"{name}_event", event)):
        if values.shape != (points.shape[0],):
            raise ValueError(f"{label}: expected shape ({points.shape[0]},) to match {name}, "
                             f"got {values.shape}")
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{label}: expected integer labels, got dtype {values.dtype}")
    if points.shape[0] < MIN_TSNE_POINTS:
        raise ValueError(f"{name}: t-SNE needs at least {MIN_TSNE_POINTS} points, got {points.shape[0]}")
    if video.min() < 0:
        raise ValueError(f"{name}_video: video indices must be >= 0, got {video.min()}")
    if event.min() < -1:
        raise ValueError(f"{name}_event: event indices must be >= -1, got {event.min()}")
    return points, video, event


def _draw_panel(ax, xy, video, event, panel_title: str, colours) -> None:
    """Scatter one panel: colour by video, marker by event, outside-event tokens small and faint."""
    for v in np.unique(video):
        colour = colours(int(v))
        outside = (video == v) & (event < 0)  # (N,)
        ax.scatter(xy[outside, 0], xy[outside, 1], s=6, marker=".", color=colour, alpha=0.3)
        for e in np.unique(event[(video == v) & (event >= 0)]):
            inside = (video == v) & (event == e)  # (N,)
            ax.scatter(xy[inside, 0], xy[inside, 1], s=24, color=colour, alpha=0.85,
                       marker=EVENT_MARKERS[int(e) % len(EVENT_MARKERS)], edgecolors="none")
    ax.set_title(panel_title)
    ax.set_xticks([])
    ax.set_yticks([])


def collapse_figure(frame_tokens, frame_video, frame_event, queries, query_video, query_event,
                    out_path, title: str, seed: int = 0, *, video_names=None) -> None:
    """Write the two-panel t-SNE PNG (frame tokens | queries) atomically to `out_path`.

    `video_names` (optional, length K) labels the legend; default "video 0" ... "video K-1".
    """
    require_analysis_extra()
    from matplotlib.figure import Figure

    frame_tokens, frame_video, frame_event = _check_panel("frame", frame_tokens, frame_video, frame_event)
    queries, query_video, query_event = _check_panel("query", queries, query_video, query_event)
    video_names = _video_names({"frame_video": frame_video, "query_video": query_video}, video_names)

    fig = Figure(figsize=(11, 5))
    left, right = fig.subplots(1, 2)
    _draw_pair(left, right, dict(frame_tokens=frame_tokens, frame_video=frame_video, frame_event=frame_event,
                                 queries=queries, query_video=query_video, query_event=query_event), seed)
    _legends(left, right, video_names, int(max(frame_event.max(), query_event.max())) + 1)
    fig.suptitle(title)
    fig.tight_layout()

    with atomic_path(out_path) as tmp:  # creates the parent folder; no temp file left on error
        fig.savefig(tmp, format="png", dpi=120)


def _video_names(points: dict, video_names) -> list:
    """Legend names of the videos (default "video 0" ...), checked against the labels."""
    n_videos = int(max(points["frame_video"].max(), points["query_video"].max())) + 1
    if n_videos > MAX_VIDEOS:
        raise ValueError(f"frame_video/query_video: at most {MAX_VIDEOS} videos can be coloured, got {n_videos}")
    if video_names is None:
        return [f"video {v}" for v in range(n_videos)]
    if len(video_names) != n_videos:
        raise ValueError(f"video_names: expected {n_videos} names, got {len(video_names)}")
    return list(video_names)


def _draw_pair(left, right, points: dict, seed: int, prefix: str = "") -> None:
    """The two panels of one model: frame tokens (left) and queries (right), each its own t-SNE."""
    from matplotlib import colormaps
    colours = colormaps["tab10"]
    _draw_panel(left, tsne_2d(points["frame_tokens"], seed), points["frame_video"], points["frame_event"],
                f"{prefix}video frame tokens", colours)
    _draw_panel(right, tsne_2d(points["queries"], seed), points["query_video"], points["query_event"],
                f"{prefix}queries", colours)


def _legends(left, right, video_names: list, n_events: int) -> None:
    """What colour (video) and marker (event within its video, the first n_events) mean, on the two
    panels given."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    colours = colormaps["tab10"]
    handles = [Line2D([], [], linestyle="", marker="o", color=colours(v), label=str(name))
               for v, name in enumerate(video_names)]
    right.legend(handles=handles, fontsize="small", loc="best", title="colour: video", title_fontsize="small")
    markers = [Line2D([], [], linestyle="", marker=EVENT_MARKERS[e], color="grey", label=f"event {e + 1}")
               for e in range(min(max(n_events, 1), len(EVENT_MARKERS)))]
    markers.append(Line2D([], [], linestyle="", marker=".", color="grey", alpha=0.5, label="outside any event"))
    left.legend(handles=markers, fontsize="small", loc="best", title="marker: event in its video",
                title_fontsize="small")


def compare_figure(models: dict[str, dict], out_png, title: str, seed: int = 0, *, video_names=None) -> None:
    """The paper's figure: one row per model (name -> figure_points dict of the same videos, in
    order), frame tokens left and queries right; PNG at `out_png` and a PDF beside it, atomically."""
    require_analysis_extra()
    from matplotlib.figure import Figure

    if len(models) < 2:
        raise ValueError(f"compare_figure needs at least 2 models, got {len(models)}")
    checked = {}
    for name, p in models.items():
        frame = _check_panel("frame", p["frame_tokens"], p["frame_video"], p["frame_event"])
        query = _check_panel("query", p["queries"], p["query_video"], p["query_event"])
        checked[name] = dict(zip(("frame_tokens", "frame_video", "frame_event"), frame),
                             **dict(zip(("queries", "query_video", "query_event"), query)))
    names = [_video_names(p, video_names) for p in checked.values()]
    if any(n != names[0] for n in names):
        raise ValueError("compare_figure: the models must show the same videos")
    fig = Figure(figsize=(11, 4.6 * len(checked)))
    axes = fig.subplots(len(checked), 2, squeeze=False)
    for (left, right), (name, points) in zip(axes, checked.items()):
        _draw_pair(left, right, points, seed, prefix=f"{name}: ")
    n_events = max(int(max(p["frame_event"].max(), p["query_event"].max())) + 1 for p in checked.values())
    _legends(axes[0][0], axes[0][1], names[0], n_events)
    fig.suptitle(title)
    fig.tight_layout()
    save_png_and_pdf(fig, out_png)


def save_png_and_pdf(fig, out_png: str | Path) -> None:
    """Write `fig` to out_png and beside it as .pdf, each atomically."""
    out_png = Path(out_png)
    for path, fmt in ((out_png, "png"), (out_png.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)


def pick_videos(event_counts: dict[str, int], k: int) -> list[str]:
    """The k videos with the most events (ties: smaller id first), returned in ascending id order."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    if not event_counts:
        raise ValueError("event_counts: no videos to pick from")
    ranked = sorted(event_counts, key=lambda vid: (-event_counts[vid], vid))
    return sorted(ranked[:k])
