"""Result tables from metrics JSON files: one row per configuration, mean and std over seeds.

    table = ablation_table({"baseline": ["runs/baseline/seed1/metrics.json", ...]})
    write_table(table, "results/ablation.csv")
    table = ablation_table({"baseline": [".../collapse.json", ...]}, metrics=COLLAPSE_METRICS, digits=3)

Columns: configuration, seeds, R@1, R@5, R@10, R@100, SumR (means over seeds, 2 decimals), then
R@1_std ... SumR_std (sample std over seeds; empty with one seed), in the ablation table the
seed-paired SumR difference to the baseline with its 95 % interval half-width and the number of
pairs (`SumR_paired_diff`, `SumR_paired_ci95`, `paired_seeds`), the split the epoch was selected on
(`selection`: val or reported_split), how many test queries could not be evaluated (their video
could not be fetched: `queries_not_evaluated`), then the configuration's description. Each number
traces to the metrics files named in the sidecar `<table>.sources.json`.
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


# two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30; beyond, the normal 1.96
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def paired_difference(values: dict[int, float], reference: dict[int, float]) -> dict:
    """Mean over the seeds both have of (value - reference value) and its 95 % interval half-width,
    t(0.975, n - 1) x sd / sqrt(n); a seed pairs a configuration's run with the reference run of the
    same seed (same initial weights where shapes agree, same batch order). Fewer than 2 pairs: no
    interval."""
    seeds = sorted(set(values) & set(reference))
    diffs = [values[s] - reference[s] for s in seeds]
    if not diffs:
        return {"mean": None, "ci95": None, "n": 0}
    half = None
    if len(diffs) > 1:
        df = len(diffs) - 1
        half = (T975[df - 1] if df <= len(T975) else 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": statistics.fmean(diffs), "ci95": half, "n": len(diffs)}


def _paired_columns(rows: list[dict], reference_rows: list[dict], metric: str, digits: int) -> dict:
    by_seed = {r["seed"]: r["metrics"][metric] for r in rows if metric in r["metrics"]}
    ref = {r["seed"]: r["metrics"][metric] for r in reference_rows if metric in r["metrics"]}
    diff = paired_difference(by_seed, ref)
    rnd = (lambda x: "" if x is None else round(x, digits))
    return {f"{metric}_paired_diff": rnd(diff["mean"]), f"{metric}_paired_ci95": rnd(diff["ci95"]),
            "paired_seeds": diff["n"] or ""}


def ablation_table(files: dict[str, list[str | Path]], descriptions: dict[str, str] | None = None,
                   metrics: tuple[str, ...] = METRICS, digits: int = 2, paired_reference: str | None = None,
                   paired_metric: str = "SumR") -> list[dict]:
    """One row per configuration (in the given order) from its seeds' metrics files. With
    `paired_reference` (a configuration's name), each row also gets the seed-paired difference of
    `paired_metric` to that configuration and its 95 % interval (`paired_difference`)."""
    reference_rows = [read_metrics(p) for p in files[paired_reference]] if paired_reference else None
    table = []
    for configuration, paths in files.items():
        rows = [read_metrics(p) for p in paths]
        seeds = " ".join(str(r["seed"]) for r in rows if r["seed"] is not None)
        description = (descriptions or {}).get(configuration, "")
        selection = " ".join(sorted({str(r.get("selection", "")) for r in rows}))
        left_out = {r.get("queries_without_video") for r in rows} - {None}
        paired = _paired_columns(rows, reference_rows, paired_metric, digits) if reference_rows else {}
        table.append({"configuration": configuration, "seeds": seeds, **summarise(rows, metrics, digits),
                      **paired, "selection": selection,
                      "queries_not_evaluated": " ".join(map(str, sorted(left_out))), "description": description})
    return table


def write_table(table: list[dict], path: str | Path, sources: dict | None = None,
                metrics: tuple[str, ...] = METRICS) -> None:
    """CSV atomically (+ a sources sidecar naming every metrics file behind each row)."""
    paired = [k for k in (table[0] if table else {}) if k.endswith(("_paired_diff", "_paired_ci95")) or k == "paired_seeds"]
    columns = ["configuration", "seeds", *metrics, *(f"{m}_std" for m in metrics), *paired, "selection",
               "queries_not_evaluated", "description"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(path, buf.getvalue())
    if sources is not None:
        write_json(Path(path).with_suffix(".sources.json"), {k: [str(p) for p in v] for k, v in sources.items()})
