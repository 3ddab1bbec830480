"""The evaluate job's collapse diagnostics from the evaluation's own encodings (issue 23 item 5): one
encoding of the split gives metrics.json and collapse.json; in float32 from the stores the diagnostics
equal the standalone analysis (stages.collapse_run) to the bit, in bfloat16 they equal the standalone
analysis at bfloat16 and stay within BF16_TOL of float32's; from the float16 feature cache within
CACHE_TOL of the stores'; the float32 encodings read in place give the float64 copies' numbers.
Run: .venv/bin/python -m pytest tests/test_shared_diagnostics.py -q
"""
import dataclasses
import json

import numpy as np
import pytest

from prvr.data.dataset import PRVRDataset
from prvr.evaluation import analysis
from prvr.evaluation.analysis import analyse, evaluate_and_diagnose, moments_from_files
from prvr.evaluation.evaluate import evaluate_split
from prvr.store.feature_cache import build_feature_cache
from prvr.stages import CollapseOutput, collapse_run, evaluate_run
from prvr.training.model_file import model_from_saved, read_model_file
from prvr.training.trainer import train
from test_trainer import _cfg

# max |difference| of a diagnostic other than the hit rates, on the tiny trained model; measured:
BF16_TOL = 0.005  # bfloat16 vs float32: 0.00042 (frame_contrast), 0 on the others
CACHE_TOL = 0.005  # float16 cache vs float32 stores: 0.00079 (text_teacher_corr), 4.4e-5 frame_contrast
# a hit rate (frame_hit, clip_hit) is a share of the 12 queries: one query whose best token changes
# moves it by 1/12 (measured: none moved)


def _assert_close(a: dict, b: dict, tol: float, n_queries: int = 12) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= (1 / n_queries if key in ("frame_hit", "clip_hit") else tol), key


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """conftest's features, a model trained on them (1 epoch), the val split's annotation file."""
    root = tmp_path_factory.mktemp("diagnostics")
    train(_cfg(epochs=1), 1, data, root / "run")
    rows, rng = [], np.random.default_rng(3)
    for line in data.val_captions.read_text().splitlines():
        cid = line.split()[0]
        vid, k = cid.split("#")[0], int(cid.split("#")[-1])
        start = float(rng.uniform(0, 5))
        rows.append({"vid_name": vid, "duration": 8.0, "ts": [start, start + float(rng.uniform(1, 3))],
                     "desc": f"caption {k}", "desc_id": len(rows)})
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "run/model.pt", root / "val.jsonl", root


def _setup(data, model_path, annotations, precision="float32"):
    model, cfg = model_from_saved(read_model_file(model_path), str(model_path), "cpu")
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, precision=precision, batch_size=3))
    dataset = PRVRDataset.for_model(data.val_captions, data.video_feats, data.text_feats, cfg.model)
    moments = moments_from_files(dataset.index, annotations, data.video_feats, cfg.model.frame_tokens)
    return model, cfg, dataset, moments


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_shared_diagnostics_equal_the_standalone_analysis(data, run, precision):
    model, cfg, dataset, moments = _setup(data, run[0], run[1], precision)
    metrics, shared = evaluate_and_diagnose(model, dataset, cfg.eval, moments)
    assert metrics == evaluate_split(model, dataset, cfg.eval)
    assert shared == analyse(model, dataset, moments, cfg.eval.batch_size, "cpu", precision)
    assert {"frame_contrast", "frame_hit", "clip_hit", "text_sibling_pct", "text_teacher_corr"} <= set(shared)


def test_bfloat16_diagnostics_stay_close_to_float32(data, run):
    model, cfg, dataset, moments = _setup(data, run[0], run[1])
    full = analyse(model, dataset, moments, 3, "cpu", "float32")
    half = analyse(model, dataset, moments, 3, "cpu", "bfloat16")
    _assert_close(full, half, BF16_TOL)


def test_in_place_float32_encodings_give_the_float64_copies_numbers(data, run):
    """encoded_record reads the float32 encodings and casts each chunk: the same record as the float64
    arrays of split_embeddings, chunked or not."""
    model, cfg, dataset, moments = _setup(data, run[0], run[1])
    emb = analysis.split_embeddings(model, dataset, 3)
    copies = analysis.collapse_record(emb["queries"], emb["frame_tokens"], analysis.teacher_embeddings(dataset),
                                      moments, emb["clip_tokens"], emb["frame_to_clip"])
    assert emb["queries"].dtype == np.float64 and analyse(model, dataset, moments, 3) == copies
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis, "QUERY_CHUNK", 2)
        assert analyse(model, dataset, moments, 3) == pytest.approx(copies, rel=1e-12)


def test_evaluate_run_writes_collapse_like_collapse_run(data, run, tmp_path):
    model_path, annotations, _ = run
    target = CollapseOutput(annotations, None, tmp_path / "collapse.json")
    record = evaluate_run(model_path, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m.json",
                          split="val", collapse=target)
    alone = evaluate_run(model_path, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m2.json",
                         split="val")
    assert record["metrics"] == alone["metrics"]
    cfg = _cfg(epochs=1)
    reference = collapse_run(model_path, cfg, "val", annotations, data.val_captions, data.video_feats,
                             data.text_feats, None, tmp_path / "reference.json")
    shared = json.loads(target.out.read_text())
    assert shared["metrics"] == reference["metrics"] and shared["n_queries"] == reference["n_queries"] == 12
    assert "the encodings of metrics.json" in shared["embeddings"] and "float32" in shared["embeddings"]
    assert {"model", "annotations", "captions", "video_feats"} <= set(shared["provenance"]["inputs"])


def test_cache_diagnostics_stay_close_to_the_stores(data, run, tmp_path):
    model_path, annotations, root = run
    model, cfg, stores, moments = _setup(data, model_path, annotations)
    cache = build_feature_cache(tmp_path / "cache", [data.val_captions], data.video_feats, data.text_feats,
                                cfg.model.frame_tokens, cfg.model.max_query_len)
    cached = PRVRDataset.from_cache(cache, data.val_captions, cfg.model)
    _, from_stores = evaluate_and_diagnose(model, stores, cfg.eval, moments)
    _, from_cache = evaluate_and_diagnose(model, cached, cfg.eval, moments)
    _assert_close(from_stores, from_cache, CACHE_TOL)


def test_a_failed_diagnostic_is_one_line_naming_collapse_json(data, run, tmp_path, monkeypatch):
    """A zero embedding stops the shared path as collapse_run stops: one PrvrError line naming the file."""
    from prvr.errors import PrvrError
    model_path, annotations, _ = run
    real = analysis.encoded_record

    def zero_queries(queries, videos, dataset, moments):
        return real({"query": queries["query"] * 0}, videos, dataset, moments)
    monkeypatch.setattr(analysis, "encoded_record", zero_queries)
    target = CollapseOutput(annotations, None, tmp_path / "collapse.json")
    with pytest.raises(PrvrError, match=r"collapse.json: collapse analysis of .*model.pt failed: .*zero-norm"):
        evaluate_run(model_path, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m.json",
                     split="val", collapse=target)
