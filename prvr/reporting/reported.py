"""The reported numbers of the paper's main table (config/reported.yaml), loaded and checked.

    reported = load_reported("config/reported.yaml")   # methods, sources, rows; or one-line PrvrError
    reported.method_of("adaptive")                       # "MSC (this paper)"

Every entry is checked: known keys, R@K in [0, 100] not decreasing with K, SumR in [0, 400] and the
sum of the four R@K where all are given (within SUM_TOLERANCE: four values rounded to 0.1).
`disagreements` names, per row, the other sources of the same method and dataset whose numbers differ.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prvr.errors import PrvrError
from prvr.reporting.tables import METRICS
from prvr.yaml_files import read_yaml_mapping

DATASETS = ("tvr", "activitynet", "charades", "qvhighlights")  # the benchmarks that may have reported numbers
LIMITS = {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@100": 100.0, "SumR": 400.0}
SUM_TOLERANCE = 0.25  # four values rounded to 0.1 may sum 0.2 away from the rounded SumR


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
