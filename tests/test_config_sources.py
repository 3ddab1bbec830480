"""One validation for every config source: value ranges, --config strings, the source named in each
error, duplicate YAML keys, ablation files, and the one-line error of a Snakemake run."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from prvr.config import Config, ConfigError, load_config, merge, training_settings
from prvr.config_checks import problems
from prvr.config_sources import Layer, ablation_config, check_ablations, resolve_layers

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def test_shipped_config_and_every_ablation_pass_the_checks():
    cfg = load_config(REPO / "config/config.yaml")
    assert problems(cfg) == []
    rows = check_ablations(cfg, REPO / "config/ablations")
    assert list(rows) == list(cfg.ablations) and all(problems(row) == [] for row in rows.values())


@pytest.mark.parametrize("overrides, key, words", [
    ({"train": {"epochs": 0}}, "train.epochs", "must be >= 1"),
    ({"train": {"batch_size": 0}}, "train.batch_size", "must be >= 1"),
    ({"frames": {"shard_size": 0}}, "frames.shard_size", "must be >= 1"),
    ({"frames": {"fps": -2}}, "frames.fps", "must be > 0.0"),
    ({"eval": {"ks": [0]}}, "eval.ks", "must be >= 1"),
    ({"eval": {"ks": [1, 1]}}, "eval.ks", "duplicates"),
    ({"eval": {"tie_tolerance": 0.01}}, "eval.tie_tolerance", "must be <"),
    ({"eval": {"tie_tolerance": -1.0e-6}}, "eval.tie_tolerance", "must be >="),
    ({"train": {"lr": float("nan")}}, "train.lr", "finite"),
    ({"model": {"heads": 5}}, "model.heads", "must divide model.hidden=64"),
    ({"eval": {"w_clip": -0.4}}, "eval.w_clip", "must be >= 0.0"),
    ({"eval": {"w_clip": 0, "w_frame": 0}}, "eval.w_frame", "must be > 0"),
    ({"model": {"dropout": 1.0}}, "model.dropout", "must be < 1.0"),
    ({"model": {"clip_tokens": 64}}, "model.clip_tokens", "<= model.frame_tokens=32"),
    ({"model": {"merging": {"enabled": True, "stages": [24, 16, 4]}}}, "model.merging.stages", "end at"),
    ({"model": {"merging": {"enabled": True, "stages": [24, 24, 8]}}}, "model.merging.stages", "strictly"),
    ({"loss": {"cbva": {"enabled": True, "adaptive": {"enabled": True, "segment_choices": [12, 4]}}}},
     "loss.cbva.adaptive.segment_choices", "at most model.clip_tokens=8"),
    ({"loss": {"tcpl": {"temperature": 0}}}, "loss.tcpl.temperature", "> 0.0"),
    ({"loss": {"cbva": {"weight": -1}}}, "loss.cbva.weight", ">= 0.0"),
    ({"train": {"device": "tpu"}}, "train.device", "cpu, cuda"),
    ({"eval": {"device": "gpu"}}, "eval.device", "cpu, cuda"),
    ({"seeds": []}, "seeds", "must not be empty"),
    ({"seeds": [1, 1]}, "seeds", "duplicates"),
    ({"ablations": ["../x"]}, "ablations", "not a file name"),
    ({"corpus": {"min_events": 5, "max_events": 3}}, "corpus.max_events", ">= 5"),
    ({"corpus": {"event_seconds": [3.0, 2.0]}}, "corpus.event_seconds", "low <= high"),
    ({"clip": {"model": "ViT-L-14"}}, "clip.pretrained", "only for prvr-tiny-clip"),
    ({"clip": {"pretrain": {"batch_size": 1}}}, "clip.pretrain.batch_size", ">= 2"),
])
def test_bad_values_are_one_line_errors_naming_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as err:
        merge(Config(), overrides, "my.yaml")
    message = str(err.value)
    assert message.startswith(f"my.yaml: {key}: ") and words in message and "\n" not in message
    assert err.value.key == key


def test_good_edge_values_pass():
    cfg = merge(Config(), {"clip": {"model": "ViT-L-14", "pretrained": "openai"}, "train": {"early_stop": 0},
                           "frames": {"num_frames": 12}, "model": {"heads": 8, "dropout": 0.0}})
    assert problems(cfg) == []


def test_command_line_strings_are_read_as_the_types_their_keys_want():
    """Snakemake's --config passes every value as a string: seeds=[1] -> ['1'], train='{"epochs": 5}' ->
    {'epochs': '5'}."""
    cli = {"seeds": ["1"], "ablations": ["baseline"], "train": {"epochs": "5", "lr": "1e-3"},
           "frames": {"num_frames": "null"}, "clip": {"pretrained": "openai", "model": "ViT-B-32"},
           "model": {"gauss_widths": ["1", "2.5"], "merging": {"enabled": "true"}}}
    cfg = resolve_layers([Layer.file(REPO / "config/config.yaml"), Layer("--config", cli, text=True)])
    assert cfg.seeds == (1,) and cfg.ablations == ("baseline",) and cfg.train.epochs == 5
    assert cfg.train.lr == 1e-3 and cfg.frames.num_frames is None and cfg.clip.pretrained == "openai"
    assert cfg.model.gauss_widths == (1.0, 2.5) and cfg.model.merging.enabled is True
    with pytest.raises(ConfigError, match=r"^--config: train.epochs: expected int, got 'five'$"):
        resolve_layers([Layer.file(REPO / "config/config.yaml"), Layer("--config", {"train": {"epochs": "five"}},
                                                                          text=True)])


def test_file_values_are_not_read_from_strings(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text('train:\n  epochs: "5"\n')
    with pytest.raises(ConfigError, match=r"my.yaml: train.epochs: expected int, got '5'"):
        resolve_layers([Layer.file(REPO / "config/config.yaml"), Layer.file(path)])


def test_each_error_names_the_source_that_set_the_key(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("model:\n  hidden: 384\ntrain:\n  epochs: 0\n")
    base = Layer.file(REPO / "config/config.yaml")
    with pytest.raises(ConfigError, match=r"^.*mine.yaml: train.epochs: must be >= 1"):
        resolve_layers([base, Layer.file(mine)])
    with pytest.raises(ConfigError, match=r"^--config: model.heads: must divide model.hidden=384, got 5$"):
        resolve_layers([base, Layer.file(mine), Layer("--config", {"model": {"heads": "5"}, "train": {"epochs": "2"}},
                                                        text=True)])
    with pytest.raises(ConfigError, match=r"^--config: train.epocs: unknown key"):
        resolve_layers([base, Layer("--config", {"train": {"epocs": "2"}}, text=True)])
    # later sources win, as in Snakemake
    cfg = resolve_layers([base, Layer.file(mine), Layer("--config", {"train": {"epochs": "3"}}, text=True)])
    assert cfg.train.epochs == 3 and cfg.model.hidden == 384


def test_duplicate_yaml_keys_are_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: duplicate key 'lr' at line 4"):
        load_config(path)
    nested = tmp_path / "top.yaml"
    nested.write_text("train: {epochs: 3}\ntrain: {epochs: 4}\n")
    with pytest.raises(ConfigError, match=r"top.yaml: duplicate key 'train' at line 2"):
        Layer.file(nested)


def test_ablation_files_pass_the_same_checks(tmp_path):
    bad_value = tmp_path / "fast.yaml"
    bad_value.write_text("description: x\ntrain: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"fast.yaml: train.batch_size: must be >= 1, got 0"):
        ablation_config(Config(), bad_value)
    bad_section = tmp_path / "other.yaml"
    bad_section.write_text("corpus: {n_train: 3}\n")
    with pytest.raises(ConfigError, match=r"other.yaml: corpus: an ablation file may set only"):
        ablation_config(Config(), bad_section)
    with pytest.raises(ConfigError, match=r"missing.yaml: no such ablation file"):
        check_ablations(Config(), tmp_path, ["missing"])


def test_training_settings_hold_exactly_what_changes_training():
    base = training_settings(Config())
    for unrelated in ({"seeds": [5]}, {"ablations": ["baseline"]}, {"analysis": {"tsne_seed": 3}},
                      {"clip": {"batch_size": 7}}, {"eval": {"batch_size": 7}}, {"eval": {"device": "cuda"}},
                      {"frames": {"shard_size": 3}}):
        assert training_settings(merge(Config(), unrelated)) == base, unrelated
    for related in ({"eval": {"w_clip": 0.5}}, {"eval": {"ks": [1, 5]}}, {"eval": {"ties": "optimistic"}},
                    {"train": {"lr": 0.001}}, {"model": {"dropout": 0.1}}, {"loss": {"margin": 0.2}}):
        assert training_settings(merge(Config(), related)) != base, related


def _dry_run(tmp_path, *args, quiet=True):
    return subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
                           *(["-q"] if quiet else []), "--cores", "1", *args],
                          capture_output=True, text=True, timeout=300)


def test_snakemake_config_errors_are_one_line(tmp_path):
    (tmp_path / "my.yaml").write_text("frames:\n  shard_size: 0\n")
    cases = [(("--config", 'train={"epochs": 0}'), "--config: train.epochs: must be >= 1, got 0"),
             (("--configfile", str(tmp_path / "my.yaml")), "my.yaml: frames.shard_size: must be >= 1, got 0"),
             (("--config", "ablations=[baseline,nope]"), "nope.yaml: no such ablation file")]
    for args, words in cases:
        result = _dry_run(tmp_path, *args)
        errors = [line for line in result.stderr.splitlines() if line.startswith("prvr config error")]
        assert result.returncode != 0 and len(errors) == 1 and words in errors[0], result.stderr
        assert "Traceback" not in result.stderr and "jsonschema" not in result.stderr


def test_snakemake_config_strings_work(tmp_path):
    result = _dry_run(tmp_path, "--config", "ablations=[baseline]", "seeds=[1]", 'train={"epochs": 5}')
    assert result.returncode == 0, result.stderr


def _gpus_by_rule(tmp_path, *config):
    out = _dry_run(tmp_path, "--config", "ablations=[baseline]", "seeds=[1]", *config, quiet=False).stdout
    rules, current = {}, None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
        elif "resources:" in line and current:
            gpu = [part.split("=")[1] for part in line.split(": ", 1)[1].split(", ") if part.startswith("gpu=")]
            rules[current] = int(gpu[0]) if gpu else 0
    return rules


def test_gpus_follow_each_rules_own_device(tmp_path):
    """train.device cuda gives training a GPU and nothing else; eval.device moves evaluation and analysis."""
    rules = _gpus_by_rule(tmp_path, 'train={"device": "cuda"}')
    assert rules["train"] == 1 and rules["evaluate"] == rules["tsne"] == 0
    rules = _gpus_by_rule(tmp_path, 'eval={"device": "cuda"}')
    assert rules["train"] == 0 and rules["evaluate"] == rules["tsne"] == 1


def test_ablation_file_per_dataset_overrides(tmp_path):
    """`datasets: {<name>: {...}}` applies only on that dataset; every section is checked."""
    from prvr.config import Config
    from prvr.config_sources import ablation_config
    path = tmp_path / "row.yaml"
    path.write_text("eval: {w_clip: 0.7, w_frame: 0.3}\n"
                    "datasets:\n  charades:\n    eval: {w_clip: 0.5, w_frame: 0.5}\n"
                    "  activitynet:\n    loss: {margin: 0.2}\n")
    demo = ablation_config(Config(), path)
    assert (demo.eval.w_clip, demo.loss.margin) == (0.7, Config().loss.margin)
    charades = ablation_config(dataclasses.replace(Config(), dataset="charades"), path, check_values=False)
    assert (charades.eval.w_clip, charades.eval.w_frame, charades.loss.margin) == (0.5, 0.5, Config().loss.margin)
    for text, message in (("datasets:\n  tvx:\n    eval: {w_clip: 1.0}\n", r"datasets.tvx: unknown dataset"),
                          ("datasets:\n  tvr:\n    corpus: {seed: 1}\n", r"datasets.tvr: corpus: an ablation file may set only"),
                          ("datasets:\n  tvr:\n    eval: {w_clip: -1.0}\n", r"datasets.tvr.*eval.w_clip"),
                          ("datasets: [tvr]\n", r"datasets: expected a mapping")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            ablation_config(Config(), path)


def _benchmark(*extra: Layer):
    return resolve_layers([Layer.file(REPO / "config/config.yaml"), *extra], dataset_dir=REPO / "config/datasets")


@pytest.mark.parametrize("dataset, sizes", [("tvr", (3072, 768)), ("activitynet", (1024, 1024)),
                                            ("charades", (1024, 1024))])
def test_the_baselines_feature_family_brings_its_own_sizes(dataset, sizes):
    """`dataset=<name> data.videos=released_bigfile`: MS-SL's I3D+RoBERTa sizes and 30 query tokens,
    under a --config that still wins; the CLIP default keeps one size for frames and captions."""
    clip = _benchmark(Layer("--config", {"dataset": dataset}, text=True))
    assert (clip.model.input_dim, clip.model.text_input_dim, clip.model.max_query_len) == (768, None, 77)
    i3d = _benchmark(Layer("--config", {"dataset": dataset, "data": {"videos": "released_bigfile"}}, text=True))
    assert (i3d.model.input_dim, i3d.model.text_input_dim, i3d.model.max_query_len) == (*sizes, 30)
    assert i3d.data.released_bigfile_dir.endswith("/FeatureData/" + {"tvr": "i3d_resnet", "activitynet": "i3d",
                                                                      "charades": "i3d_rgb_lgi"}[dataset])
    mine = _benchmark(Layer("--config", {"dataset": dataset, "data": {"videos": "released_bigfile"},
                                         "model": {"max_query_len": "40"}}, text=True))
    assert mine.model.max_query_len == 40 and mine.model.input_dim == sizes[0]


def test_a_bad_by_source_section_is_named_even_when_not_selected(tmp_path):
    bad = tmp_path / "tvr.yaml"
    bad.write_text((REPO / "config/datasets/tvr.yaml").read_text().replace("max_query_len: 30", "max_query_len: x"))
    with pytest.raises(ConfigError, match=r"tvr.yaml: by_source.released_bigfile: model.max_query_len: expected int"):
        load_config(bad)
    bad.write_text("dataset: tvr\nby_source:\n  bigfile: {model: {input_dim: 3}}\n")
    with pytest.raises(ConfigError, match=r"by_source.bigfile: expected a mapping under one of generated, "):
        load_config(bad)


def test_dl_dkd_is_refused_where_the_captions_are_not_clip():
    """Its teacher is CLIP: RoBERTa tokens cannot stand in. With its own teacher files (their CLIP
    ViT-B/32 frames and sentences, the family's default paths) it trains; without them the rows the
    workflow trains are refused, while a model only evaluated (an imported checkpoint) is not."""
    from prvr.config_sources import check_workflow_config
    no_teacher = {"videos": "released_bigfile", "teacher_video_h5": "null", "teacher_text_h5": "null"}
    layers = [Layer.file(REPO / "config/config.yaml"),
              Layer("--config", {"dataset": "tvr", "data": no_teacher, "ablations": ["baseline"]}, text=True)]
    with pytest.raises(ConfigError) as info:
        check_workflow_config(layers, REPO)
    assert str(info.value).startswith(f"{REPO / 'config/ablations/dl_dkd.yaml'}: model.name: dl_dkd distils from a "
                                      "CLIP teacher, but the I3D+RoBERTa features have no CLIP captions: give "
                                      "DL-DKD's teacher files (data.teacher_video_h5, data.teacher_text_h5)")
    i3d = {"dataset": "tvr", "data": {"videos": "released_bigfile"}, "ablations": ["baseline"]}
    layers[-1] = Layer("--config", i3d, text=True)  # the family's teacher files: all five rows
    assert list(check_workflow_config(layers, REPO)[1]) == ["baseline", "ms_sl", "gmmformer_v1", "dl_dkd", "adaptive"]
    cfg = _benchmark(Layer("--config", {"dataset": "tvr", "data": no_teacher}, text=True))
    assert check_ablations(cfg, REPO / "config/ablations", ["dl_dkd"])["dl_dkd"].model.name == "dl_dkd"


def test_one_teacher_file_without_the_other_is_named():
    with pytest.raises(ConfigError, match=r"data.teacher_text_h5: data.teacher_video_h5 needs data.teacher_text_h5"):
        _benchmark(Layer("--config", {"dataset": "tvr", "data": {"videos": "released_bigfile",
                                                                 "teacher_text_h5": "null"}}, text=True))


def test_a_dataset_file_given_as_configfile_applies_its_by_source_section_too():
    """`--configfile config/datasets/tvr.yaml` (a user's copy of one): by_source is not an unknown key."""
    layers = [Layer.file(REPO / "config/config.yaml"), Layer.file(REPO / "config/datasets/tvr.yaml"),
              Layer("--config", {"data": {"videos": "released_bigfile"}}, text=True)]
    cfg = resolve_layers(layers)
    assert (cfg.dataset, cfg.model.input_dim, cfg.model.text_input_dim) == ("tvr", 3072, 768)
    assert resolve_layers(layers[:2]).model.text_input_dim is None
