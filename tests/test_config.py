"""Config loading: defaults equal config.yaml, strict keys and types, overrides, ablation files."""
from pathlib import Path

import pytest

from prvr.config import Config, ConfigError, config_hash, from_dict, load_config, merge, to_dict

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_loads():
    cfg = load_config(REPO / "config/config.yaml")
    assert cfg.dataset == "demo" and cfg.eval.w_clip == 0.4 and cfg.eval.w_frame == 0.6


def test_dataclass_defaults_are_config_yaml():
    """One set of defaults: a partial file given to the CLI is completed as Snakemake completes it."""
    assert to_dict(Config()) == to_dict(load_config(REPO / "config/config.yaml"))


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.epocs: unknown key"):
        load_config(path)


@pytest.mark.parametrize("data, where", [
    ({"train": {"epochs": "ten"}}, "train.epochs"),
    ({"train": {"lr": True}}, "train.lr"),
    ({"model": {"gauss_widths": [1.0, "x"]}}, r"model.gauss_widths\[1\]"),
    ({"corpus": {"event_seconds": [1.0]}}, "corpus.event_seconds"),
    ({"clip": 3}, "clip"),
])
def test_wrong_types_are_one_line_errors(data, where):
    with pytest.raises(ConfigError, match=where) as err:
        from_dict(data, "cfg.yaml")
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_merge_overrides_and_hash_changes():
    base = Config()
    new = merge(base, {"train": {"epochs": 2}, "model": {"gauss_widths": [1, 2]}})
    assert new.train.epochs == 2 and new.model.gauss_widths == (1.0, 2.0) and new.train.lr == base.train.lr
    assert config_hash(new) != config_hash(base) and config_hash(Config()) == config_hash(base)
    with pytest.raises(ConfigError, match="loss.temperature: unknown key"):
        merge(base, {"loss": {"temperature": 0.1}})


@pytest.mark.parametrize("ablation", sorted(p.stem for p in (REPO / "config/ablations").glob("*.yaml")))
def test_every_shipped_ablation_file_applies(ablation):
    from prvr.config_sources import ablation_config
    cfg = ablation_config(load_config(REPO / "config/config.yaml"), REPO / f"config/ablations/{ablation}.yaml")
    assert isinstance(cfg, Config)


def test_bad_ablation_file_names_file_and_key(tmp_path):
    from prvr.config_sources import ablation_config
    bad = tmp_path / "x.yaml"
    bad.write_text("loss:\n  tcpl: {enabled: true, weight: 3}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: loss.tcpl.weight: unknown key"):
        ablation_config(Config(), bad)


def test_unknown_form_is_rejected():
    with pytest.raises(ConfigError, match=r"loss.cbva.form: 'nce' is not one of within_video, infonce"):
        from_dict({"loss": {"cbva": {"form": "nce"}}}, "a.yaml")


def test_key_table_in_config_readme_names_every_key():
    """config/README.md's table covers every leaf key (by name, or by a `section.*` row)."""
    import re
    rows = [line.split("|")[1] for line in (REPO / "config/README.md").read_text().splitlines()
            if line.startswith("| `")]
    named = {key for row in rows for key in re.findall(r"`([a-z0-9_.*]+)`", row)}

    def leaves(data, prefix=""):
        for name, value in data.items():
            yield from leaves(value, f"{prefix}{name}.") if isinstance(value, dict) else [prefix + name]
    missing = [key for key in leaves(to_dict(Config()))
               if key not in named and not any(key.startswith(n[:-1]) for n in named if n.endswith(".*"))]
    assert missing == []


@pytest.mark.parametrize("override, message", [
    ({"corpus": {"gap_seconds": [1.0, 0.5]}}, r"corpus.gap_seconds: must be \[low, high\] with 0 <= low <= high"),
    ({"clip": {"pretrain": {"aux_weight": -1.0}}}, r"clip.pretrain.aux_weight: must be >= 0"),
    ({"corpus": {"scene_keep": 1.5}}, r"corpus.scene_keep: must be in \[0, 1\], got 1.5"),
])
def test_corpus_gap_and_aux_weight_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        merge(Config(), override)
