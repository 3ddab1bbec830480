"""One validation for a config assembled from several sources, as Snakemake assembles it.

Snakemake builds its config from config/config.yaml, then each --configfile, then --config (whose
values all arrive as strings: `seeds=[1]` gives ['1']). `resolve_layers` re-reads each file
strictly (a duplicate key is an error), reads --config values as the types their keys want, checks
each source for unknown keys and wrong types, merges them in Snakemake's order, then checks the
values of the result (prvr.config_checks). Every error is one line naming the source (a file, or
--config) and the key:

    cfg = resolve_layers([Layer.file("config/config.yaml"), Layer("--config", {"seeds": ["1"]}, text=True)])
    check_ablations(cfg, Path("config/ablations"))   # each row's file applies and passes the same checks
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from prvr.config import BY_SOURCE, DATASETS, Config, deep_merge, from_dict, merge, split_by_source, to_dict
from prvr.config_checks import training_problems
from prvr.config_data import DataConfig
from prvr.errors import ConfigError
from prvr.yaml_files import read_yaml_mapping

ABLATION_SECTIONS = ("description", "model", "loss", "train", "eval")  # what an ablation row may change
PER_DATASET = "datasets"  # an ablation file's per-dataset overrides: datasets: {charades: {eval: {...}}}


@dataclasses.dataclass
class Layer:
    """One config source: its name in messages, its (partial) mapping, whether values are text, and
    a file's by_source sections (applied right after it when data.videos selects one)."""
    source: str
    data: dict
    text: bool = False
    by_source: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def file(cls, path: str | Path) -> "Layer":
        mapping, sections = split_by_source(read_yaml_mapping(path), str(path))
        return cls(str(path), mapping, by_source=sections)


def _pick(full: dict, partial: dict) -> dict:
    """The keys of `partial` with their values from `full` (the typed form of the same mapping)."""
    return {k: _pick(full[k], v) if isinstance(v, dict) and isinstance(full.get(k), dict) else full[k]
            for k, v in partial.items()}


def _typed(layer: Layer) -> dict:
    """The layer's own keys, type-checked (values of the type their key wants, lists for tuples)."""
    full = from_dict(layer.data, layer.source, text=layer.text, check_values=False)
    return _pick(to_dict(full), layer.data)


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, path + ".")
        else:
            yield path


def _owner(key: str, owners: dict[str, str], default: str) -> str:
    """The source that set `key` (or the closest enclosing key, or a key inside it)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in owners:
            return owners[".".join(parts[:n])]
    inside = [src for k, src in owners.items() if k.startswith(key + ".")]
    return inside[-1] if inside else default


def with_dataset_layer(layers: list[Layer], dataset_dir: Path) -> list[Layer]:
    """Insert config/datasets/<dataset>.yaml after the base file when a source selects a benchmark
    (`dataset: tvr`), so that the base < the dataset's settings < --configfile < --config; its
    by_source section for the data.videos the layers select comes right after it (MS-SL's
    I3D+RoBERTa release: `dataset=tvr data.videos=released_bigfile` gets that family's sizes)."""
    name = None
    for layer in layers:  # a plain string in files and --config alike; resolve_layers checks it
        name = layer.data.get("dataset", name)
    if name not in DATASETS or name == "demo":
        return layers  # an unknown name is reported by the checks, with the known ones
    return [layers[0], Layer.file(Path(dataset_dir) / f"{name}.yaml"), *layers[1:]]


def with_source_sections(layers: list[Layer]) -> list[Layer]:
    """Each file's by_source section for the data.videos the layers select, right after that file."""
    videos = DataConfig.videos
    for layer in layers:  # the source the merged config will name
        data = layer.data.get("data")
        videos = data.get("videos", videos) if isinstance(data, dict) else videos
    out = []
    for layer in layers:
        out.append(layer)
        if videos in layer.by_source:
            out.append(Layer(f"{layer.source}: {BY_SOURCE}.{videos}", layer.by_source[videos]))
    return out


def resolve_layers(layers: list[Layer], dataset_dir: Path | None = None) -> Config:
    """Merge the sources in order (later ones win) into a checked Config; errors name source and key.
    dataset_dir: where <dataset>.yaml files live (config/datasets); None: no dataset layer."""
    if not layers:
        raise ValueError("resolve_layers needs at least one layer")
    if dataset_dir is not None:
        layers = with_dataset_layer(layers, dataset_dir)
    layers = with_source_sections(layers)
    merged, owners = {}, {}
    for layer in layers:
        typed = _typed(layer)
        merged = deep_merge(merged, typed)
        owners.update({key: layer.source for key in _leaves(typed)})
    try:
        return from_dict(merged, "<merged>")
    except ConfigError as err:
        source = _owner(err.key or "", owners, layers[0].source)
        raise ConfigError(str(err).replace("<merged>", source, 1), err.key) from None


def _ablation_sections(mapping: dict, source: str) -> None:
    for section in mapping:
        if section not in ABLATION_SECTIONS:
            raise ConfigError(f"{source}: {section}: an ablation file may set only "
                              f"{', '.join(ABLATION_SECTIONS + (PER_DATASET,))}", section)


def ablation_config(cfg: Config, ablation_file: Path, check_values: bool = True) -> Config:
    """The base config with one ablation file's overrides applied (sections: ABLATION_SECTIONS), then
    its `datasets: {<dataset>: {...}}` overrides for cfg.dataset (a baseline's released settings that
    differ per benchmark, e.g. MS-SL's score weights on Charades). check_values=False: keys and types
    only (for a partial base config)."""
    overrides = read_yaml_mapping(ablation_file)
    per_dataset = overrides.pop(PER_DATASET, None) or {}
    _ablation_sections(overrides, str(ablation_file))
    if not isinstance(per_dataset, dict):
        raise ConfigError(f"{ablation_file}: {PER_DATASET}: expected a mapping of dataset names", PER_DATASET)
    for dataset, section in per_dataset.items():
        if dataset not in DATASETS:
            raise ConfigError(f"{ablation_file}: {PER_DATASET}.{dataset}: unknown dataset "
                              f"(known: {', '.join(DATASETS)})", PER_DATASET)
        if not isinstance(section, dict):
            raise ConfigError(f"{ablation_file}: {PER_DATASET}.{dataset}: expected a mapping", PER_DATASET)
        _ablation_sections(section, f"{ablation_file}: {PER_DATASET}.{dataset}")
    overrides.pop("description", None)
    merged = merge(cfg, overrides, str(ablation_file), check_values=check_values)
    for dataset, section in per_dataset.items():  # every dataset's section is type-checked, one applied
        checked = merge(merged, section, f"{ablation_file}: {PER_DATASET}.{dataset}", check_values=check_values)
        if dataset == cfg.dataset:
            merged = checked
    return merged


def check_ablations(cfg: Config, ablation_dir: Path, names=None, key: str = "ablations") -> dict[str, Config]:
    """Every ablation row's config (the base with its file applied), checked like any other source;
    `names` default to cfg.ablations, `key` is the config key that lists them (for messages)."""
    out = {}
    for name in names if names is not None else cfg.ablations:
        path = Path(ablation_dir) / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"{path}: no such ablation file (config {key!r} names {name!r})", key)
        out[name] = ablation_config(cfg, path)
    return out


REFERENCE = "clip_input"  # the untrained reference row and figure: CLIP input features, no model


def check_workflow_config(layers: list[Layer], repo: Path) -> tuple[Config, dict[str, Config]]:
    """What the workflow checks when Snakemake starts (and `prvr check-config` without it): the
    merged config of `layers` and the config of every row it trains (ablations, then main_table)."""
    cfg = resolve_layers(layers, dataset_dir=Path(repo) / "config" / "datasets")
    for key in ("ablations", "main_table"):
        if REFERENCE in getattr(cfg, key):
            raise ConfigError(f"config {key}: {REFERENCE!r} is reserved for the untrained reference row", key)
    ablation_dir = Path(repo) / "config" / "ablations"
    rows = check_ablations(cfg, ablation_dir)  # name -> that row's full config
    # the main table's rows are trained like ablation rows: checked now too
    rows.update(check_ablations(cfg, ablation_dir, [n for n in cfg.main_table if n not in rows], key="main_table"))
    for name, row in rows.items():  # every row here is trained on these features
        for key, problem in training_problems(row)[:1]:
            raise ConfigError(f"{ablation_dir / name}.yaml: {key}: {problem}", key)
    return cfg, rows
