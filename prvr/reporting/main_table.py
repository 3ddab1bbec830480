"""The paper's main table (results/main_table.csv): the rows trained here beside the reported numbers.

    reported = load_reported("config/reported.yaml")
    frame = main_table({"baseline": [".../baseline/seed1/metrics.json", ...]}, reported, dataset="demo",
                       params={"baseline": (30.51e6, 0)}, costs=read_costs("results/costs_tvr.json"))
    write_main_table(frame, "results/main_table.csv", sources={...})   # pandas; .md / .tex: renderings

Rows: per dataset (the run's own first, then tvr, activitynet, charades), per method in reported.yaml's
order (a trained configuration no method names comes last, under its own name): the **reproduced** row
(mean and sample std over seeds of the runs' metrics.json, as the ablation table), then the method's
**reported** rows, one per source. Columns (MAIN_COLUMNS): dataset, method, kind (reproduced |
reported), configuration (the ablation file trained), source, features (the feature family), n_seeds,
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
from dataclasses import dataclass
from pathlib import Path

from prvr.config_data import RELEASED_SOURCES
from prvr.errors import PrvrError
from prvr.io import write_json, write_text
from prvr.reporting.tables import METRICS, summarise
from prvr.yaml_files import read_yaml_mapping

DATASETS = ("tvr", "activitynet", "charades")  # the benchmarks with reported numbers
LIMITS = {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@100": 100.0, "SumR": 400.0}
SUM_TOLERANCE = 0.25  # four values rounded to 0.1 may sum 0.2 away from the rounded SumR
NOT_MEASURED = "not measured"
MAIN_COLUMNS = ["dataset", "method", "kind", "configuration", "source", "features", "n_seeds", "seeds",
                *METRICS, *(f"{m}_std" for m in METRICS), "selection", "tie_rule", "queries_not_evaluated",
                "params_M", "train_params_M", "train_step_s", "eval_s", "costs_measured_on",
                "sources_disagree", "note"]


# ------------------------------------------------------------------------------- reported numbers

@dataclass(frozen=True)
class Method:
    name: str
    trained: str | None  # the ablation file trained for it; None: reported rows only


@dataclass(frozen=True)
class Source:
    key: str
    label: str
    reference: str


@dataclass(frozen=True)
class ReportedRow:
    dataset: str
    method: str
    source: str  # a key of Reported.sources
    metrics: dict  # the metrics the source gives (SumR always)
    features: str = ""
    note: str = ""


@dataclass(frozen=True)
class Reported:
    methods: tuple[Method, ...]
    sources: dict[str, Source]
    rows: tuple[ReportedRow, ...]

    def method_of(self, configuration: str) -> str:
        """The method a trained configuration stands for (its own name when no method names it)."""
        return next((m.name for m in self.methods if m.trained == configuration), configuration)


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PrvrError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _mapping(value, where: str, allowed: set[str] | None, required: set[str] = frozenset()) -> dict:
    """`value` if it is a mapping with only `allowed` keys (None: any) and every `required` one."""
    if not isinstance(value, dict):
        raise PrvrError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if allowed is not None and key not in allowed:
            raise PrvrError(f"{where}.{key}: unknown key (known: {', '.join(sorted(map(str, allowed)))})")
    for key in sorted(required - set(value)):
        raise PrvrError(f"{where}.{key}: missing")
    return value


def _methods(value, where: str) -> tuple[Method, ...]:
    if not isinstance(value, list) or not value:
        raise PrvrError(f"{where}: expected a non-empty list of {{name, trained}}")
    methods = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        _mapping(item, at, {"name", "trained"}, {"name", "trained"})
        trained = item["trained"]
        if trained is not None:
            _text(trained, f"{at}.trained")
        methods.append(Method(_text(item["name"], f"{at}.name"), trained))
    for field in ("name", "trained"):
        values = [getattr(m, field) for m in methods if getattr(m, field) is not None]
        if len(set(values)) != len(values):
            raise PrvrError(f"{where}: {field} repeated: {sorted({v for v in values if values.count(v) > 1})}")
    return tuple(methods)


def _metrics(entry: dict, where: str) -> dict:
    metrics = {}
    for name in METRICS:
        value = entry.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= LIMITS[name]:
            raise PrvrError(f"{where}.{name}: expected a number in [0, {LIMITS[name]:g}], got {value!r}")
        metrics[name] = float(value)
    if "SumR" not in metrics:
        raise PrvrError(f"{where}.SumR: missing (every reported row needs at least SumR)")
    recalls = [metrics.get(k) for k in METRICS[:-1]]
    known = [r for r in recalls if r is not None]
    if known != sorted(known):
        raise PrvrError(f"{where}: R@K must not decrease with K, got {known}")
    if None not in recalls and abs(sum(recalls) - metrics["SumR"]) > SUM_TOLERANCE:
        raise PrvrError(f"{where}.SumR: {metrics['SumR']} is not R@1 + R@5 + R@10 + R@100 = {sum(recalls):.1f}")
    return metrics


def load_reported(path: str | Path) -> Reported:
    """config/reported.yaml as a checked `Reported`; any malformed entry is one line naming file and key."""
    data = _mapping(read_yaml_mapping(path), str(path), {"methods", "sources", "reported"},
                    {"methods", "sources", "reported"})
    methods = _methods(data["methods"], f"{path}: methods")
    sources = {}
    for key, item in _mapping(data["sources"], f"{path}: sources", None).items():
        at = f"{path}: sources.{key}"
        _mapping(item, at, {"label", "reference"}, {"label", "reference"})
        sources[key] = Source(key, _text(item["label"], f"{at}.label"), _text(item["reference"], f"{at}.reference"))
    rows = []
    names = {m.name for m in methods}
    for dataset, by_method in _mapping(data["reported"], f"{path}: reported", set(DATASETS)).items():
        for method, by_source in _mapping(by_method, f"{path}: reported.{dataset}", names).items():
            for source, entry in _mapping(by_source, f"{path}: reported.{dataset}.{method}", set(sources)).items():
                at = f"{path}: reported.{dataset}.{method}.{source}"
                _mapping(entry, at, {"features", "note", *METRICS}, {"SumR"})
                extras = {k: _text(entry[k], f"{at}.{k}") for k in ("features", "note") if k in entry}
                rows.append(ReportedRow(dataset, method, source, _metrics(entry, at), **extras))
    return Reported(methods, sources, tuple(rows))


def disagreements(rows: list[ReportedRow], sources: dict[str, Source]) -> dict[int, str]:
    """Per row index: the other sources of its method and dataset whose numbers differ from its own."""
    flags = {}
    for i, row in enumerate(rows):
        parts = []
        for other in rows:
            if other is row or (other.dataset, other.method) != (row.dataset, row.method):
                continue
            differ = [f"{m} {other.metrics[m]:.1f}" for m in METRICS
                      if m in row.metrics and m in other.metrics and abs(row.metrics[m] - other.metrics[m]) > 1e-9]
            if differ:
                parts.append(f"{sources[other.source].label}: {', '.join(differ)}")
        flags[i] = "; ".join(parts)
    return flags


# -------------------------------------------------------------------------------- reproduced rows

def read_run(path: str | Path) -> dict:
    """What the main table reads of one metrics.json (prvr.stages.evaluate_run)."""
    try:
        record = json.loads(Path(path).read_text())
        clip = record["provenance"]["config"]["clip"]
        videos = record["provenance"]["config"].get("data", {}).get("videos")
        features = ("released features" if videos in RELEASED_SOURCES else
                    f"CLIP {clip['model']} ({clip['pretrained'] or 'pretrained in the DAG'})")
        return {"metrics": record["metrics"], "seed": record["provenance"]["seed"],
                "selection": record["selection"], "tie_rule": record["tie_rule"],
                "queries_without_video": record.get("queries_without_video"), "features": features}
    except FileNotFoundError:
        raise PrvrError(f"{path}: metrics file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise PrvrError(f"{path}: not a metrics file of prvr evaluate ({type(err).__name__}: {err})") from None


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

def _reported_cells(row: ReportedRow, reported: Reported, flag: str) -> dict:
    source = reported.sources[row.source]
    return {"dataset": row.dataset, "method": row.method, "kind": "reported", "source": source.label,
            "features": row.features, **{m: row.metrics.get(m, "") for m in METRICS},
            "sources_disagree": flag, "note": "; ".join(x for x in (row.note, source.reference) if x)}


def main_table(trained: dict[str, list], reported: Reported, dataset: str,
               params: dict[str, tuple[int, int]] | None = None, costs: dict | None = None,
               ablation_sha256: dict[str, str] | None = None, notes: dict[str, str] | None = None):
    """The main table as a pandas DataFrame (columns MAIN_COLUMNS, empty cells ""): `trained` maps a
    configuration to its seeds' metrics files (config main_table order), `params` to its
    count_parameters, `ablation_sha256` to its ablation file's hash (a bench row of another file
    is not used), `notes` to a description."""
    import pandas as pd

    reproduced = {name: {**reproduced_row(name, reported.method_of(name), paths, dataset),
                         **cost_cells(name, (params or {}).get(name), costs, (ablation_sha256 or {}).get(name)),
                         "note": (notes or {}).get(name, "")}
                  for name, paths in trained.items()}
    flags = disagreements(list(reported.rows), reported.sources)
    order = [m.name for m in reported.methods]
    order += [r["method"] for r in reproduced.values() if r["method"] not in order]
    rows = []
    for ds in dict.fromkeys([dataset, *DATASETS]):
        for method in order:
            rows += [r for r in reproduced.values() if ds == dataset and r["method"] == method]
            rows += [_reported_cells(r, reported, flags[i]) for i, r in enumerate(reported.rows)
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
