"""The paper's main table (results/main_table.csv): the rows trained here beside the reported numbers.

    reported = load_reported("config/reported.yaml")
    frame = main_table({"baseline": [".../baseline/seed1/metrics.json", ...]}, reported, dataset="demo",
                       params={"baseline": (30.51e6, 0)}, costs=read_costs("results/costs_tvr.json"))
    write_main_table(frame, "results/main_table.csv", sources={...})   # pandas; .md / .tex: renderings

Rows: per dataset (the run's own first, then tvr, activitynet, charades), per method in reported.yaml's
order (a trained configuration no method names comes last, under its own name): the **reproduced** row
(mean and sample std over seeds of the runs' metrics.json, as the ablation table), then the method's
**reported** rows, one per source. Columns (MAIN_COLUMNS): dataset, method, kind (reproduced |
reported), configuration (the ablation file trained), source, features (the feature family and, on a
reproduced row, where the features come from: prvr.config_data.family_label), features_match (on a
reported row of the run's dataset: whether its family is the one trained here; a number of another
family is not a comparison), n_seeds,
seeds, R@1 ... SumR and their _std, selection (the split the epoch was chosen on), tie_rule,
queries_not_evaluated, the cost columns, sources_disagree, note.

sources_disagree: on a reported row, the other sources of the same method and dataset whose numbers
differ, with their values ("MS-SL README: R@5 32.1, R@10 43.4, SumR 172.3"); empty where all agree.

Cost columns of a reproduced row: params_M (the model the checkpoint holds, counted from model.pt by
`count_parameters`), train_params_M (plus what the loss owns in training, e.g. the CBVA head),
train_step_s and eval_s from a bench_costs file (bench/bench_costs.py: its shape and machine are in
costs_measured_on), "not measured" where there is no such file or it has no row for the configuration.
Nothing here is estimated: every number is read from a file.

`benchmark_table` gathers the run's Snakemake benchmark files (results/benchmarks.csv, the report's
rule benchmarks).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from prvr.config_data import family_label, family_of
from prvr.errors import PrvrError
from prvr.io import write_json, write_text
from prvr.reporting.reported import DATASETS, Reported, ReportedRow, disagreements, load_reported  # noqa: F401
from prvr.reporting.tables import METRICS, summarise

NOT_MEASURED = "not measured"
MAIN_COLUMNS = ["dataset", "method", "kind", "configuration", "source", "features", "features_match", "n_seeds", "seeds",
                *METRICS, *(f"{m}_std" for m in METRICS), "selection", "tie_rule", "queries_not_evaluated",
                "params_M", "train_params_M", "train_step_s", "eval_s", "costs_measured_on",
                "sources_disagree", "note"]


# -------------------------------------------------------------------------------- reproduced rows

def read_run(path: str | Path) -> dict:
    """What the main table reads of one metrics.json (prvr.stages.evaluate_run)."""
    try:
        record = json.loads(Path(path).read_text())
        clip = record["provenance"]["config"]["clip"]
        data = record["provenance"]["config"].get("data", {})
        features = family_label(data.get("feature_family"), data.get("videos"), clip["model"], clip["pretrained"])
        return {"metrics": record["metrics"], "seed": record["provenance"]["seed"],
                "selection": record["selection"], "tie_rule": record["tie_rule"],
                "queries_without_video": record.get("queries_without_video"), "features": features}
    except FileNotFoundError:
        raise PrvrError(f"{path}: metrics file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise PrvrError(f"{path}: not a metrics file of prvr evaluate ({type(err).__name__}: {err})") from None


# the main-table method of each release format of prvr.checkpoints (names of config/reported.yaml)
RELEASE_METHODS = {"msc": "MSC (this paper)", "gmmformer_v2": "GMMFormer v2", "gmmformer_v1": "GMMFormer",
                   "ms_sl": "MS-SL", "dl_dkd": "DL-DKD"}


def released_row(release: str, path, dataset: str) -> dict:
    """A release's own checkpoint, imported and evaluated here (one file: no seeds, no std)."""
    run = read_run(path)
    record = json.loads(Path(path).read_text())
    imported = record.get("imported_from") or {}
    return {"dataset": dataset, "method": RELEASE_METHODS.get(release, release), "kind": "released checkpoint",
            "configuration": f"{release} checkpoint", "source": "released checkpoint, evaluated here",
            "features": run["features"], "n_seeds": 1, "seeds": "" if run["seed"] is None else str(run["seed"]),
            **{m: run["metrics"][m] for m in METRICS}, "selection": run["selection"], "tie_rule": run["tie_rule"],
            "queries_not_evaluated": run["queries_without_video"],
            "note": f"{imported.get('file', '')} (sha256 {str(imported.get('sha256', ''))[:12]}, "
                    f"epoch {imported.get('epoch')})"}


def _joined(runs: list[dict], key: str) -> str:
    return " ".join(sorted({str(r[key]) for r in runs if r[key] is not None}))


def reproduced_row(configuration: str, method: str, paths: list, dataset: str) -> dict:
    """One trained configuration over its seeds (mean and sample std, as the ablation table)."""
    if not paths:
        raise PrvrError(f"main table row {configuration!r}: no metrics files")
    runs = [read_run(p) for p in paths]
    return {"dataset": dataset, "method": method, "kind": "reproduced", "configuration": configuration,
            "source": "trained here", "features": _joined(runs, "features"), "n_seeds": len(runs),
            "seeds": " ".join(str(r["seed"]) for r in runs), **summarise(runs, METRICS, 2),
            "selection": _joined(runs, "selection"), "tie_rule": _joined(runs, "tie_rule"),
            "queries_not_evaluated": _joined(runs, "queries_without_video")}


# ------------------------------------------------------------------------------------------ costs

def count_parameters(model_pt: str | Path) -> tuple[int, int]:
    """(parameters of the model model.pt holds, parameters its loss owns in training: the CBVA head),
    the model rebuilt from the checkpoint's own config; the loss's are counted on a fresh loss of
    the same config (they are not saved)."""
    from prvr.evaluation.evaluate import score_branches
    from prvr.losses import create_loss
    from prvr.training.model_file import model_from_saved, read_model_file
    saved = read_model_file(model_pt)
    model, cfg = model_from_saved(saved, str(model_pt), "cpu")
    loss = create_loss(cfg.loss, hidden=cfg.model.hidden, model_name=cfg.model.name, branches=score_branches(model))
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in loss.parameters())


def read_parameters(path: str | Path) -> tuple[int, int]:
    """(model, loss) parameter counts of a parameters.json (rule parameters: count_parameters)."""
    try:
        record = json.loads(Path(path).read_text())
        return int(record["model"]), int(record["loss"])
    except FileNotFoundError:
        raise PrvrError(f"{path}: parameter count not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise PrvrError(f"{path}: not a parameter count ({type(err).__name__}: {err})") from None


def read_costs(path: str | Path) -> dict:
    """A bench_costs file: {"shape", "machine", "scale", "configurations": {name: {...}}}."""
    try:
        costs = json.loads(Path(path).read_text())
        for key in ("shape", "machine", "scale", "configurations"):
            if not isinstance(costs[key], dict):
                raise TypeError(f"{key} is not a mapping")
        for name, row in costs["configurations"].items():
            for key in () if "skipped" in row else ("train_step_s", "eval_s", "ablation_sha256"):
                if key not in row:
                    raise KeyError(f"configurations.{name}.{key}")
    except FileNotFoundError:
        raise PrvrError(f"{path}: costs file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PrvrError(f"{path}: not a bench_costs file ({type(err).__name__}: {err})") from None
    return costs


def costs_label(costs: dict) -> str:
    """Where and how the costs were measured, for the costs_measured_on column."""
    shape, machine, scale = costs["shape"], costs["machine"], costs["scale"]
    fraction = scale.get("eval_fraction", 1.0)
    evaluation = ("full split" if fraction >= 1 else
                  f"eval timed on {fraction:.0%} of the split, extrapolated per item")
    return (f"{shape.get('name')} shape; {machine.get('device_name')}, {machine.get('threads')} threads, "
            f"torch {machine.get('torch')}; median of {scale.get('train_steps')} steps; {evaluation}")


def cost_cells(configuration: str, params: tuple[int, int] | None, costs: dict | None,
               ablation_sha256: str | None) -> dict:
    """The cost columns of one reproduced row (see the module docstring)."""
    cells = {"params_M": "", "train_params_M": "", "train_step_s": NOT_MEASURED, "eval_s": NOT_MEASURED,
             "costs_measured_on": ""}
    if params is not None:
        cells["params_M"] = round(params[0] / 1e6, 3)
        cells["train_params_M"] = round(sum(params) / 1e6, 3)
    row = (costs or {}).get("configurations", {}).get(configuration)
    if row is None or row.get("skipped"):
        return cells
    if ablation_sha256 is not None and row["ablation_sha256"] != ablation_sha256:
        cells["costs_measured_on"] = "not measured: the ablation file changed since the bench run"
        return cells
    return {**cells, "train_step_s": round(row["train_step_s"], 3), "eval_s": round(row["eval_s"], 1),
            "costs_measured_on": costs_label(costs)}


# -------------------------------------------------------------------------------------- the table

def features_match(reported_features: str, trained_features: str | None) -> str:
    """How a reported row's feature family compares with the row trained here for its method (or,
    without one, with the run's features): a number of another family is not a comparison."""
    if not trained_features:
        return ""
    if not reported_features or reported_features == "not stated":
        return "features not stated"
    ours = " / ".join(sorted({family_of(f) for f in trained_features.split(" / ")}))
    if family_of(reported_features) == ours:
        return "same family as trained here"
    return f"other family: {family_of(reported_features)} reported, {ours} trained here"


def _reported_cells(row: ReportedRow, reported: Reported, flag: str, trained_features: str | None) -> dict:
    source = reported.sources[row.source]
    return {"dataset": row.dataset, "method": row.method, "kind": "reported", "source": source.label,
            "features": row.features, "features_match": features_match(row.features, trained_features),
            **{m: row.metrics.get(m, "") for m in METRICS},
            "sources_disagree": flag, "note": "; ".join(x for x in (row.note, source.reference) if x)}


def main_table(trained: dict[str, list], reported: Reported, dataset: str,
               params: dict[str, tuple[int, int]] | None = None, costs: dict | None = None,
               ablation_sha256: dict[str, str] | None = None, notes: dict[str, str] | None = None,
               released: dict[str, str | Path] | None = None):
    """The main table as a pandas DataFrame (columns MAIN_COLUMNS, empty cells ""): `trained` maps a
    configuration to its seeds' metrics files (config main_table order), `params` to its
    count_parameters, `ablation_sha256` to its ablation file's hash (a bench row of another file
    is not used), `notes` to a description, `released` a release format to its imported checkpoint's
    metrics.json (rows of kind "released checkpoint", after the method's reproduced row)."""
    import pandas as pd

    reproduced = {name: {**reproduced_row(name, reported.method_of(name), paths, dataset),
                         **cost_cells(name, (params or {}).get(name), costs, (ablation_sha256 or {}).get(name)),
                         "note": (notes or {}).get(name, "")}
                  for name, paths in trained.items()}
    released_rows = [released_row(name, path, dataset) for name, path in (released or {}).items()]
    flags = disagreements(list(reported.rows), reported.sources)
    order = [m.name for m in reported.methods]
    order += [r["method"] for r in [*reproduced.values(), *released_rows] if r["method"] not in order]
    run_features = " / ".join(sorted({r["features"] for r in [*reproduced.values(), *released_rows]})) or None
    rows = []
    for ds in dict.fromkeys([dataset, *DATASETS]):
        for method in order:
            own = [r for r in reproduced.values() if ds == dataset and r["method"] == method]
            own += [r for r in released_rows if ds == dataset and r["method"] == method]
            trained_features = (" / ".join(r["features"] for r in own) or run_features) if ds == dataset else None
            rows += own
            rows += [_reported_cells(r, reported, flags[i], trained_features) for i, r in enumerate(reported.rows)
                     if (r.dataset, r.method) == (ds, method)]
    return pd.DataFrame([{c: r.get(c, "") for c in MAIN_COLUMNS} for r in rows], columns=MAIN_COLUMNS, dtype=object)


def write_main_table(frame, path: str | Path, sources: dict | None = None) -> None:
    """The CSV atomically (pandas), plus a sources sidecar naming every file behind a row."""
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))
    if sources is not None:
        write_json(Path(path).with_suffix(".sources.json"), sources)


# ---------------------------------------------------------------------------- rule benchmarks

BENCHMARK_COLUMNS = ("s", "max_rss", "cpu_time", "mean_load")


def benchmark_table(files: dict[str, str | Path]):
    """Snakemake benchmark files (one TSV per job: s, h:m:s, max_rss MB, ..., cpu_time) as one
    DataFrame: job (the name given), wall s, peak RSS MB, CPU s, mean load."""
    import pandas as pd

    rows = []
    for job, path in files.items():
        try:
            record = pd.read_csv(path, sep="\t").iloc[-1]
            rows.append({"job": job, **{c: _number(record[c]) for c in BENCHMARK_COLUMNS}})
        except (FileNotFoundError, KeyError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise PrvrError(f"{path}: not a Snakemake benchmark file ({type(err).__name__})") from None
    return pd.DataFrame(rows, columns=["job", *BENCHMARK_COLUMNS]).rename(
        columns={"s": "wall_s", "max_rss": "max_rss_MB", "cpu_time": "cpu_s"})


def _number(value):
    """A benchmark cell: a rounded number, or "" where Snakemake wrote "-" (not measured)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(number) else round(number, 2)
