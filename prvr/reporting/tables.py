"""Result tables from metrics JSON files: one row per configuration, mean and std over seeds.

    table = ablation_table({"baseline": ["runs/baseline/seed1/metrics.json", ...]})
    write_table(table, "results/ablation.csv")

Columns: configuration, seeds, R@1, R@5, R@10, R@100, SumR (means over seeds, 2 decimals), then
R@1_std ... SumR_std (sample std over seeds; empty with one seed), then the configuration's
description. Each number traces to the metrics files named in the sidecar `<table>.sources.json`.
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


def read_metrics(path: str | Path) -> dict:
    """Metrics dict and seed of one metrics.json."""
    try:
        record = json.loads(Path(path).read_text())
        return {"metrics": record["metrics"], "seed": record["provenance"]["seed"]}
    except FileNotFoundError:
        raise PrvrError(f"{path}: metrics file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PrvrError(f"{path}: not a metrics file ({type(err).__name__}: {err})") from None


def summarise(rows: list[dict]) -> dict:
    """Mean and sample std of each metric over the seeds' rows."""
    out = {}
    for name in METRICS:
        values = [r["metrics"][name] for r in rows]
        out[name] = round(statistics.fmean(values), 2)
        out[f"{name}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else ""
    return out


def ablation_table(files: dict[str, list[str | Path]], descriptions: dict[str, str] | None = None) -> list[dict]:
    """One row per configuration (in the given order) from its seeds' metrics files."""
    table = []
    for configuration, paths in files.items():
        rows = [read_metrics(p) for p in paths]
        seeds = " ".join(str(r["seed"]) for r in rows)
        description = (descriptions or {}).get(configuration, "")
        table.append({"configuration": configuration, "seeds": seeds, **summarise(rows), "description": description})
    return table


def write_table(table: list[dict], path: str | Path, sources: dict | None = None) -> None:
    """CSV atomically (+ a sources sidecar naming every metrics file behind each row)."""
    columns = ["configuration", "seeds", *METRICS, *(f"{m}_std" for m in METRICS), "description"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(path, buf.getvalue())
    if sources is not None:
        write_json(Path(path).with_suffix(".sources.json"), {k: [str(p) for p in v] for k, v in sources.items()})
