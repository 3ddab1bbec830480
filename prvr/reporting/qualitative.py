"""The qualitative figure (results/figures/qualitative.png/.pdf): for a few test queries, the baseline's
and the full method's top-5 videos as frame strips, each with its predicted moment marked, and the
ground-truth video framed with its annotated moment.

Which queries (`choose_queries`, stated in the caption): the n_disagree queries on which the two models
rank the relevant video most differently (largest |log2 rank_a - log2 rank_b|; ties by caption id),
then n_random others drawn with a fixed seed. Ranks are optimistic (1 + candidates scored strictly
higher): the figure shows orders, the tables carry the tie rule.

    rows = [QueryRow(caption, truth_vid, (2.0, 5.5), {"baseline": [Hit...], "adaptive": [Hit...]}, ranks)]
    qualitative_figure(rows, "results/figures/qualitative.png", caption)
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr.reporting.figures import save_png_and_pdf

TRUTH_COLOUR, MOMENT_COLOUR = "#2ca02c", "#1f77b4"


@dataclass(frozen=True)
class VideoHit:
    """One of a model's top videos for a query: its strip (T, h, w, 3) uint8, duration and moment."""
    video: str
    strip: np.ndarray
    duration: float
    moment: tuple[float, float]


@dataclass(frozen=True)
class QueryRow:
    caption: str
    truth: str  # the relevant video
    truth_span: tuple[float, float]
    hits: dict[str, list[VideoHit]]  # model name -> its top videos, best first
    ranks: dict[str, int]  # model name -> the relevant video's rank


def choose_queries(ranks_a: np.ndarray, ranks_b: np.ndarray, caption_ids: list[str], n_disagree: int = 3,
                   n_random: int = 2, seed: int = 0) -> list[tuple[int, str]]:
    """[(query index, why)]: the largest rank disagreements, then seeded random others."""
    gap = np.abs(np.log2(ranks_a) - np.log2(ranks_b))  # (Q,)
    order = sorted(range(len(gap)), key=lambda q: (-gap[q], caption_ids[q]))
    chosen = [(q, "disagree") for q in order[:n_disagree]]
    rest = sorted(set(range(len(gap))) - {q for q, _ in chosen})
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(rest), size=min(n_random, len(rest)), replace=False) if rest else []
    return chosen + [(rest[i], "random") for i in sorted(int(p) for p in picks)]


def _bar(ax, duration: float, span: tuple[float, float], colour: str, y: float) -> None:
    """A moment as a horizontal bar under the strip, in the strip's x units (0..1 of the video)."""
    start, end = (s / duration if duration > 0 else 0.0 for s in span)
    ax.plot([start, max(end, start + 0.01)], [y, y], color=colour, linewidth=4, solid_capstyle="butt",
            transform=ax.transAxes, clip_on=False)


def _cell(ax, hit: VideoHit, row: QueryRow) -> None:
    ax.imshow(np.concatenate(list(hit.strip), axis=1), extent=(0, 1, 0, 1), aspect="auto")
    ax.set_xticks([]), ax.set_yticks([])
    _bar(ax, hit.duration, hit.moment, MOMENT_COLOUR, -0.08)
    relevant = hit.video == row.truth
    if relevant:
        _bar(ax, hit.duration, row.truth_span, TRUTH_COLOUR, -0.2)
    for spine in ax.spines.values():
        spine.set_edgecolor(TRUTH_COLOUR if relevant else "#999999")
        spine.set_linewidth(3 if relevant else 0.5)
    ax.set_title(hit.video, fontsize=6)


def qualitative_figure(rows: list[QueryRow], out_png: str | Path, caption: str) -> None:
    """One block per query (a line per model, its top videos left to right); PNG and PDF."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(rows[0].hits)
    k = max(len(h) for row in rows for h in row.hits.values())
    fig, axes = plt.subplots(len(rows) * len(models), k, figsize=(2.2 * k, 1.25 * len(rows) * len(models) + 1.2),
                             squeeze=False)
    for r, row in enumerate(rows):
        for m, name in enumerate(models):
            line = axes[r * len(models) + m]
            for ax in line:
                ax.axis("off")
            for ax, hit in zip(line, row.hits[name]):
                ax.axis("on")
                _cell(ax, hit, row)
            text = f"{name}: relevant video at rank {row.ranks[name]}"
            if m == 0:
                text = textwrap.fill(f"\u201c{row.caption}\u201d", 44, max_lines=3, placeholder=" ...") + "\n" + text
            line[0].text(-0.08, 0.5, text, transform=line[0].transAxes, ha="right", va="center", fontsize=6.5)
    fig.text(0.01, 0.005, textwrap.fill(caption, 190), fontsize=7, va="bottom")
    fig.subplots_adjust(left=0.28, right=0.99, top=0.97, bottom=0.09, hspace=0.7, wspace=0.08)
    save_png_and_pdf(fig, out_png)
    plt.close(fig)
