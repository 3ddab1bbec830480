"""Result tables from metrics JSON files: one row per configuration, mean and std over seeds.

    table = ablation_table({"baseline": ["runs/baseline/seed1/metrics.json", ...]})
    write_table(table, "results/ablation.csv")
    table = ablation_table({"baseline": [".../collapse.json", ...]}, metrics=COLLAPSE_METRICS, digits=3)

Columns: configuration, seeds, R@1, R@5, R@10, R@100, SumR (means over seeds, 2 decimals), then
R@1_std ... SumR_std (sample std over seeds; empty with one seed), the split the epoch was selected
on (`selection`: val or reported_split), how many test queries could not be evaluated (their video
could not be fetched: `queries_not_evaluated`), then the configuration's description. Each number traces to the metrics files named in the sidecar `<table>.sources.json`.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from prvr.errors import PrvrError
from prvr.io import write_json, write_text

METRICS = ("R@1", "R@5", "R@10", "R@100", "SumR")
# results/collapse.csv (prvr.evaluation.analysis): localization, then the video and text collapse numbers
COLLAPSE_METRICS = ("frame_hit", "frame_hit_chance", "clip_hit", "clip_hit_chance", "frame_contrast",
                    "frame_within", "frame_between", "text_sibling_pct", "text_teacher_corr",
                    *(f"{side}_same_{label}_pct" for label in ("kind", "shape", "motion", "colour", "scene")
                      for side in ("text", "video")))


def read_metrics(path: str | Path) -> dict:
    """Metrics dict and seed of one metrics.json."""
    try:
        record = json.loads(Path(path).read_text())
        return {"metrics": record["metrics"], "seed": record["provenance"]["seed"],
                "selection": record.get("selection", ""), "queries_without_video": record.get("queries_without_video")}
    except FileNotFoundError:
        raise PrvrError(f"{path}: metrics file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PrvrError(f"{path}: not a metrics file ({type(err).__name__}: {err})") from None


def summarise(rows: list[dict], metrics: tuple[str, ...] = METRICS, digits: int = 2) -> dict:
    """Mean and sample std of each metric over the seeds' rows; a metric that no row has (say,
    clip-branch numbers of a model-free reference row) is left empty."""
    out = {}
    for name in metrics:
        values = [r["metrics"][name] for r in rows if name in r["metrics"]]
        if values and len(values) < len(rows):
            raise PrvrError(f"metric {name!r} is in {len(values)} of {len(rows)} seeds' files of one row")
        out[name] = round(statistics.fmean(values), digits) if values else ""
        out[f"{name}_std"] = round(statistics.stdev(values), digits) if len(values) > 1 else ""
    return out


def ablation_table(files: dict[str, list[str | Path]], descriptions: dict[str, str] | None = None,
                   metrics: tuple[str, ...] = METRICS, digits: int = 2) -> list[dict]:
    """One row per configuration (in the given order) from its seeds' metrics files."""
    table = []
    for configuration, paths in files.items():
        rows = [read_metrics(p) for p in paths]
        seeds = " ".join(str(r["seed"]) for r in rows if r["seed"] is not None)
        description = (descriptions or {}).get(configuration, "")
        selection = " ".join(sorted({str(r.get("selection", "")) for r in rows}))
        left_out = {r.get("queries_without_video") for r in rows} - {None}
        table.append({"configuration": configuration, "seeds": seeds, **summarise(rows, metrics, digits),
                      "selection": selection, "queries_not_evaluated": " ".join(map(str, sorted(left_out))),
                      "description": description})
    return table


def write_table(table: list[dict], path: str | Path, sources: dict | None = None,
                metrics: tuple[str, ...] = METRICS) -> None:
    """CSV atomically (+ a sources sidecar naming every metrics file behind each row)."""
    columns = ["configuration", "seeds", *metrics, *(f"{m}_std" for m in metrics), "selection",
               "queries_not_evaluated", "description"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(path, buf.getvalue())
    if sources is not None:
        write_json(Path(path).with_suffix(".sources.json"), {k: [str(p) for p in v] for k, v in sources.items()})
