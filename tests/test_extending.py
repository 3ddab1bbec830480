"""docs/extending.md works as written.

Its ```python and ```yaml blocks (each opens with `# extending: <name>`) run as the files they stand
for. The example model and loss are registered by the page's `register` block in the project's
factories (and "mean_pool" added to ModelConfig.name's choices, the edit the page asks for) only for
the test that uses them; the model is built by create_model from the page's ablation file (loaded as
Snakemake loads one), run on a batch made by collate_videos, and checked on a 2x2 case worked by hand:
outputs, every loss term of create_loss, the scores of model_scores and R@K of evaluate_split. The
example parser reads files written here, rejects malformed lines naming file and line, and its rows go
through the page's dataset config, the benchmark conversion and the caption files of prvr.store.splits.
Every place the page's tables name must still exist, and the page has no ```bash block (every bash line
of docs/*.md is run by tests/test_readme_commands.py).
"""
import dataclasses
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from prvr import config as prvr_config
from prvr import config_sources
from prvr.config import Config, ModelConfig, merge
from prvr.config_data import SplitSource
from prvr.config_sources import Layer, check_ablations, resolve_layers
from prvr.data.dataset import PRVRDataset, collate_videos
from prvr.errors import AnnotationError, ConfigError
from prvr.evaluation.evaluate import evaluate_split, score_branches
from prvr.evaluation.model_scores import model_scores_chunked
from prvr.losses import create_loss
from prvr.losses import factory as loss_factory
from prvr.models import create_model
from prvr.models import factory as model_factory
from prvr.sources import annotations, benchmarks
from prvr.stages import write_captions
from prvr.store.feature_store import write_features
from prvr.store.splits import read_split, write_caption_txt

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "extending.md"
MODEL, FORMAT, DATASET = "mean_pool", "mytsv", "mydata"  # the page's example names
SMALL = {"input_dim": 2, "hidden": 2, "heads": 1, "frame_tokens": 2, "clip_tokens": 2}  # the 2x2 case's sizes

# The hand-worked case: two videos of two frames; query 0 (video 0) is one token, query 1 (video 1)
# two tokens of one direction, so the batch is padded and the mean masked. With L2 input norm and
# identity weights q0 = [1, 0], q1 = [0, 1]; video 0's frames are [1, 0], [0, 1] (cos 1 with either
# query's direction), video 1's [1, 1] / sqrt2, [-1, 0]: max cos 1/sqrt2 for both queries. So the
# max-over-frames cosines are S = [[1, R], [1, R]]: query 0 ranks its video first, query 1 second.
FRAMES = {"v0": [[1.0, 0.0], [0.0, 1.0]], "v1": [[1.0, 1.0], [-1.0, 0.0]]}
TOKENS = {"v0#enc#0": [[1.0, 0.0]], "v1#enc#0": [[0.0, 1.0], [0.0, 3.0]]}
R = 1 / math.sqrt(2)
HAND_SCORES = [[1.0, R], [1.0, R]]
TEST_TSV = "v0\t10\t1\t4\ta person   opens the door\nv1\t8\t0\t2.5\tthe dog runs\n"
TRAIN_TSV = "".join(f"t{i}\t6\t1\t3\tcaption {i}\n" for i in range(3))


def doc_blocks() -> dict[str, str]:
    """name -> text of every fenced block of the page (each must be a marked python or yaml block)."""
    blocks = {}
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), re.S):
        marker = re.match(r"# extending: ([\w-]+)", body)
        assert lang in ("python", "yaml") and marker, f"{DOC}: unmarked ```{lang} block {body[:60]!r}"
        assert marker.group(1) not in blocks, f"{DOC}: two blocks named {marker.group(1)}"
        blocks[marker.group(1)] = body
    return blocks


BLOCKS = doc_blocks()


def run_as_module(name: str, block: str, monkeypatch) -> types.ModuleType:
    """Run a block as module `name`, in sys.modules until the test ends (so the page's imports of it work)."""
    module = types.ModuleType(name)
    module.__file__ = f"{DOC} ({block})"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(BLOCKS[block], module.__file__, "exec"), module.__dict__)
    return module


def allow_choice(monkeypatch, cls, field_name: str, value: str) -> None:
    """Add `value` to the `choices` of a config field: the one-word edit of prvr/config*.py the page asks for."""
    field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
    choices = (*field.metadata["choices"], value)
    monkeypatch.setattr(field, "metadata", types.MappingProxyType({**field.metadata, "choices": choices}))


def install_model_example(monkeypatch) -> types.SimpleNamespace:
    """The page's model and loss as prvr.models.mean_pool / prvr.losses.mean_pool, registered by its
    `register` block, and "mean_pool" in ModelConfig.name's choices; monkeypatch undoes all of it."""
    model_module = run_as_module("prvr.models.mean_pool", "model", monkeypatch)
    loss_module = run_as_module("prvr.losses.mean_pool", "loss", monkeypatch)
    registries = {"MODEL_BUILDERS": model_factory.MODEL_BUILDERS, "RETRIEVAL_LOSSES": loss_factory.RETRIEVAL_LOSSES}
    for registry in registries.values():
        monkeypatch.setitem(registry, MODEL, None)  # recorded as absent: deleted again at teardown
    exec(compile(BLOCKS["register"], f"{DOC} (register)", "exec"), dict(registries))
    allow_choice(monkeypatch, ModelConfig, "name", MODEL)
    return types.SimpleNamespace(model=model_module, loss=loss_module)


@pytest.fixture
def example(monkeypatch):
    return install_model_example(monkeypatch)


def page_ablation(tmp_path) -> Config:
    """The page's ablation file applied to the defaults, as Snakemake's start-up check applies one."""
    (tmp_path / f"{MODEL}.yaml").write_text(BLOCKS["ablation"])
    return check_ablations(Config(), tmp_path, [MODEL])[MODEL]


def identity_model(cfg: Config):
    """The example model of `cfg` with identity weights, so its tokens are the normalised inputs."""
    model = create_model(cfg.model, seed=0)
    with torch.no_grad():
        model.project.weight.copy_(torch.eye(cfg.model.input_dim))
    return model


def hand_batch() -> dict:
    items = [{"vid": vid, "frames": np.array(FRAMES[vid], dtype=np.float32),
              "queries": [np.array(TOKENS[f"{vid}#enc#0"], dtype=np.float32)]} for vid in FRAMES]
    return collate_videos(items)


def test_every_block_is_marked_and_none_is_bash():
    assert "```bash" not in DOC.read_text()
    assert set(BLOCKS) == {"model", "loss", "register", "ablation", "test", "parser", "dataset"}


def test_every_place_the_tables_name_exists():
    rows = [cells for line in DOC.read_text().splitlines()
            if len(cells := [c.strip() for c in line.split("|")[1:-1]]) == 3 and cells[0].startswith("`")]
    assert len(rows) >= 11
    for path, where, _ in rows:
        path = REPO / path.strip("`")
        if where == "new":  # the example must not collide with a real file
            assert not path.exists(), f"{path} exists: the page's example name is taken"
        else:
            assert where.strip("`") in path.read_text(), f"{path} has no {where} any more"
    assert MODEL not in model_factory.MODEL_BUILDERS and DATASET not in prvr_config.DATASETS
    assert FORMAT not in annotations.READERS


def test_a_model_name_outside_the_config_choices_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=rf"model.name: '{MODEL}' is not one of"):
        page_ablation(tmp_path)


def test_the_example_is_registered_only_while_installed(tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        install_model_example(patch)
        assert type(create_model(page_ablation(tmp_path).model)).__name__ == "MeanPool"
    assert MODEL not in model_factory.MODEL_BUILDERS and MODEL not in loss_factory.RETRIEVAL_LOSSES
    assert "prvr.models.mean_pool" not in sys.modules and "prvr.losses.mean_pool" not in sys.modules
    assert MODEL not in ModelConfig.__dataclass_fields__["name"].metadata["choices"]
    with pytest.raises(ValueError, match="unknown model"):
        create_model(ModelConfig(name=MODEL))


def test_example_model_and_loss_on_the_hand_worked_case(example, tmp_path):
    cfg = merge(page_ablation(tmp_path), {"model": SMALL})
    assert cfg.model.name == MODEL and (cfg.eval.w_clip, cfg.eval.w_frame) == (0.5, 0.5)
    model, batch = identity_model(cfg), hand_batch()
    assert batch["query_mask"].tolist() == [[True, False], [True, True]]
    out = model(batch["frame_feats"], batch["query_feats"], batch["query_mask"])
    assert out["query"].shape == (2, 2) and out["frame_tokens"].shape == (2, 2, 2)
    assert torch.allclose(out["query"], torch.eye(2), atol=1e-4)  # q0 = [1, 0], q1 = mean of two [0, 1]

    loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden, model_name=cfg.model.name,
                          branches=score_branches(model))
    inputs = {k: v for k, v in batch.items() if k not in out}  # as the trainer passes them
    terms = loss_fn(**out, **inputs, epoch=0, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"nce_frame", "trip_frame", "smooth"}
    # Dot products = cosines S (unit tokens). InfoNCE rows: lse(1, R) - own; columns: lse(column) - own,
    # both log 2. Triplet (one negative each): queries relu(m + R - 1), relu(m + 1 - R); videos
    # relu(m + 1 - 1), relu(m + R - R). Smooth: adjacent frames at cos 0 (video 0) and -R (video 1).
    m, lse = cfg.loss.margin, lambda *x: math.log(sum(math.exp(v) for v in x))
    nce = ((lse(1, R) - 1) + (lse(1, R) - R)) / 2 + math.log(2)
    trip = (max(0.0, m + R - 1) + max(0.0, m + 1 - R)) / 2 + m
    smooth = example.loss.SMOOTH_WEIGHT * ((1 - 0) + (1 + R)) / 2
    assert terms["nce_frame"].item() == pytest.approx(cfg.loss.nce_weight_frame * nce, rel=1e-4)  # second weight
    assert terms["trip_frame"].item() == pytest.approx(trip, rel=1e-4, abs=1e-6)
    assert terms["smooth"].item() == pytest.approx(smooth, rel=1e-5)
    sum(terms.values()).backward()
    grad = model.project.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0

    with torch.no_grad():
        queries = model.encode_queries(batch["query_feats"], batch["query_mask"])
        videos = model.encode_videos(batch["frame_feats"])
    scores = model_scores_chunked(queries, videos, model.score_branches, (cfg.eval.w_clip, cfg.eval.w_frame))
    expected = (cfg.eval.w_clip + cfg.eval.w_frame) * torch.tensor(HAND_SCORES, dtype=torch.float64)
    assert scores.dtype == torch.float64 and torch.allclose(scores, expected, atol=1e-6)


def test_the_pages_own_test_passes(example, monkeypatch):
    module = run_as_module("test_mean_pool", "test", monkeypatch)
    tests = [value for name, value in vars(module).items() if name.startswith("test_") and callable(value)]
    assert tests
    for test in tests:
        test()


def test_example_parser_reads_rows_and_names_file_and_line(tmp_path, monkeypatch):
    read_mytsv = run_as_module("mytsv_reader", "parser", monkeypatch).read_mytsv
    path = tmp_path / "test.tsv"
    path.write_text(TEST_TSV + "\nv0\t10\t5\t9\tthey leave\n")  # a blank line is skipped, not numbered away
    rows = read_mytsv(path)
    assert [(q.vid, q.duration, q.start, q.end, q.desc, q.desc_id, q.caption_id) for q in rows] == [
        ("v0", 10.0, 1.0, 4.0, "a person opens the door", 0, "v0#enc#0"),
        ("v1", 8.0, 0.0, 2.5, "the dog runs", 1, "v1#enc#0"),
        ("v0", 10.0, 5.0, 9.0, "they leave", 2, "v0#enc#1")]
    bad_lines = [("v0\t10\t1\t4\n", "expected 5 tab-separated fields, got 4"),
                 ("v0\t10\tone\t4\tx\n", "duration, start and end must be numbers, got ['10', 'one', '4']"),
                 ("v0\t10\tnan\t4\tx\n", "duration, start and end must be finite"),
                 ("v0\t10\t5\t2\tx\n", "start 5.0 >= end 2.0"),
                 ("v0\t10\t1\t12\tx\n", "end 12.0 is more than 0.1 s past the duration 10.0"),
                 ("v#0\t10\t1\t2\tx\n", "video id must be a non-empty string without '#' or spaces, got 'v#0'"),
                 ("v0\t10\t1\t2\t   \n", "empty description")]
    for i, (line, what) in enumerate(bad_lines):
        bad = tmp_path / f"bad{i}.tsv"
        bad.write_text("v9\t10\t1\t2\tfine\n" + line)
        with pytest.raises(AnnotationError) as err:
            read_mytsv(bad)
        assert str(err.value) == f"{bad}:2: {what}"  # one line: file, line, what is wrong
    reversed_span = tmp_path / "fix.tsv"
    reversed_span.write_text("v0\t10\t5\t2\tx\n")
    assert [(q.start, q.end) for q in read_mytsv(reversed_span, bad_spans="fix")] == [(2.0, 5.0)]

    captions = tmp_path / "test.caption.txt"
    write_caption_txt(rows, captions)
    assert captions.read_text().splitlines()[0] == "v0#enc#0 a person opens the door"
    split = read_split(captions)
    assert split.videos == ["v0", "v1"] and split.captions["v0"] == ["v0#enc#0", "v0#enc#1"]
    assert split.texts["v1#enc#0"] == "the dog runs"


def test_example_dataset_from_config_to_evaluation(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page's data paths are relative to the working directory
    read_mytsv = run_as_module("mytsv_reader", "parser", monkeypatch).read_mytsv
    for module in (prvr_config, config_sources):  # DATASETS, the page's first edit (imported by name)
        monkeypatch.setattr(module, "DATASETS", (*prvr_config.DATASETS, DATASET))
    allow_choice(monkeypatch, Config, "dataset", DATASET)
    allow_choice(monkeypatch, SplitSource, "format", FORMAT)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / f"{DATASET}.yaml").write_text(BLOCKS["dataset"])
    cfg = resolve_layers([Layer.file(REPO / "config" / "config.yaml"), Layer("--config", {"dataset": DATASET}, text=True)],
                         dataset_dir=tmp_path / "datasets")
    assert cfg.dataset == DATASET and cfg.data.test == SplitSource(f"data/{DATASET}/test.tsv", FORMAT)
    assert (cfg.data.videos, cfg.clip.model, cfg.model.input_dim) == ("directory", "ViT-L-14", 768)
    rows = dict.fromkeys([*cfg.ablations, *cfg.main_table])  # every row the DAG trains stays valid
    assert set(check_ablations(cfg, REPO / "config" / "ablations", rows)) == set(rows)

    data_dir = tmp_path / "data" / DATASET
    data_dir.mkdir(parents=True)
    (data_dir / "train.tsv").write_text(TRAIN_TSV)
    (data_dir / "test.tsv").write_text(TEST_TSV)
    with pytest.raises(AnnotationError, match=rf"test.tsv: unknown annotation format '{FORMAT}'"):
        benchmarks.read_split_file(cfg.data.test, "error", None)  # not registered: no other reader guesses
    monkeypatch.setitem(annotations.READERS, FORMAT, read_mytsv)  # the page's table: its entry in READERS
    out = tmp_path / "results" / DATASET
    summary = benchmarks.write_benchmark_tables(cfg.data, cfg.eval.selection, out)
    assert summary["test"] == {"videos": 2, "queries": 2}
    assert summary["train"]["videos"] + summary["val"]["videos"] == 3 and summary["val"]["videos"] >= 1
    captions = out / "captions" / "test.caption.txt"
    assert write_captions(out / "annotations" / "test.jsonl", captions) == {"queries": 2, "queries_without_video": 0}
    assert read_split(captions).texts == {"v0#enc#0": "a person opens the door", "v1#enc#0": "the dog runs"}

    write_features(tmp_path / "video.h5", [(vid, np.array(f, dtype=np.float32)) for vid, f in FRAMES.items()])
    write_features(tmp_path / "text.h5", [(cid, np.array(t, dtype=np.float32)) for cid, t in TOKENS.items()])
    small = merge(page_ablation(tmp_path), {"model": SMALL})
    dataset = PRVRDataset.for_model(captions, tmp_path / "video.h5", tmp_path / "text.h5", small.model)
    metrics = evaluate_split(identity_model(small), dataset, small.eval)
    # S: query 0 ranks its video first, query 1 second (video 0 scores 1 > R); no ties
    assert (metrics["R@1"], metrics["R@5"], metrics["SumR"], metrics["queries_with_ties"]) == (50.0, 100.0, 350.0, 0)
