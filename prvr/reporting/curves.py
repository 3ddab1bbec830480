"""Training curves of one configuration: val SumR and every named loss term per epoch, seeds overlaid.

    curves_figure({1: "runs/baseline/seed1/train_log.jsonl", 2: ...}, "curves_baseline.png", "baseline")

Reads the trainer's train_log.jsonl (one JSON line per epoch: {"epoch", "loss": {term: mean}, "val":
{"SumR", ...}}); one panel per quantity (val SumR first, then the total loss and each loss term in
name order), one line per seed. Writes the PNG and, for a paper, a PDF beside it (same stem).
"""
from __future__ import annotations

import json
from pathlib import Path

from prvr.errors import PrvrError
from prvr.reporting.figures import require_analysis_extra, save_png_and_pdf


def read_log(path: str | Path) -> list[dict]:
    """The epochs of one train_log.jsonl; a malformed line is a one-line error naming file and line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise PrvrError(f"{path}: training log not found") from None
    epochs = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            epochs.append({"epoch": int(row["epoch"]), "loss": dict(row["loss"]), "SumR": float(row["val"]["SumR"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise PrvrError(f"{path}:{number}: not a training-log line ({type(err).__name__})") from None
    if not epochs:
        raise PrvrError(f"{path}: training log has no epochs")
    return epochs


def curve_series(logs: dict[int, list[dict]]) -> dict[str, dict[int, tuple[list[int], list[float]]]]:
    """quantity -> seed -> (epochs, values): "val SumR", "loss" (total), then each term by name."""
    terms = sorted({t for epochs in logs.values() for e in epochs for t in e["loss"]} - {"loss"})
    series: dict[str, dict[int, tuple[list[int], list[float]]]] = {}
    for name in ("val SumR", "loss", *terms):
        for seed, epochs in sorted(logs.items()):
            points = [(e["epoch"], e["SumR"] if name == "val SumR" else e["loss"].get(name)) for e in epochs]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                series.setdefault(name, {})[seed] = ([x for x, _ in points], [y for _, y in points])
    return series


def curves_figure(log_files: dict[int, str | Path], out_png: str | Path, title: str) -> list[str]:
    """Write the figure as PNG and PDF (same stem); returns the quantities drawn."""
    require_analysis_extra()
    from matplotlib.figure import Figure

    series = curve_series({seed: read_log(path) for seed, path in log_files.items()})
    n = len(series)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, by_seed) in zip(axes, series.items()):
        for seed, (epochs, values) in by_seed.items():
            ax.plot(epochs, values, marker=".", linewidth=1, label=f"seed {seed}")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("epoch", fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    save_png_and_pdf(fig, out_png)
    return list(series)
