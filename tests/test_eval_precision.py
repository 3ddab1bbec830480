"""eval.precision: "float32" is the evaluation as before (the reference path: no inference fast path,
MKL linears, one model call per batch); "bfloat16" encodes videos and queries under bfloat16 autocast,
gives float32 outputs and scores close to float32's on a small trained model, and is deterministic.
The CPU micro-batches of encode_videos change nothing beyond float32 rounding."""
import numpy as np
import pytest
import torch

from prvr.config import Config, EvalConfig, merge
from prvr.data.dataset import PRVRDataset
from prvr.store.feature_store import write_features
from prvr.evaluation import evaluate
from prvr.evaluation.metrics import retrieval_metrics
from prvr.models import attention
from prvr.models.parallel_gmm import WindowedLayer
from prvr.training.trainer import TrainData, load_trained, train

TINY = {"model": {"input_dim": 16, "hidden": 32, "heads": 2, "frame_tokens": 8, "clip_tokens": 4},
        "train": {"epochs": 6, "batch_size": 8, "early_stop": 10, "num_threads": 1}}
BF16_SCORE_TOL = 0.01  # max |bfloat16 - float32| over all (query, video) cosine scores (measured: 0.0020, mean 0.0004)
BF16_SUMR_TOL = 7.0  # |SumR difference| (of 400; 60 queries: one query crossing one K moves it by 1.7; measured: 0)


def _split(root, name, n_videos, rng, centres):
    """Videos whose frames sit near one of `centres` per event; captions are noisy copies of an event."""
    videos, captions, lines = {}, {}, []
    for i in range(n_videos):
        vid = f"{name}{i}"
        events = rng.choice(len(centres), size=2, replace=False)
        frames = np.concatenate([centres[e] + 0.3 * rng.normal(size=(int(rng.integers(3, 7)), 16)) for e in events])
        videos[vid] = frames.astype(np.float32)
        for k, e in enumerate(events):
            cid = f"{vid}#enc#{k}"
            captions[cid] = (centres[e] + 0.3 * rng.normal(size=(int(rng.integers(2, 6)), 16))).astype(np.float32)
            lines.append(f"{cid} caption {k} of {vid}\n")
    (root / f"{name}.txt").write_text("".join(lines))
    return videos, captions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A gmmformer_v2 trained 6 epochs on learnable features, and its test split (30 videos, 60 queries)."""
    root = tmp_path_factory.mktemp("precision")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    videos, captions = {}, {}
    for name, n in (("train", 48), ("val", 12), ("test", 30)):
        v, c = _split(root, name, n, rng, centres)
        videos.update(v), captions.update(c)
    write_features(root / "v.h5", videos.items())
    write_features(root / "t.h5", captions.items())
    data = TrainData(root / "train.txt", root / "val.txt", root / "v.h5", root / "t.h5")
    cfg = merge(Config(), TINY)
    train(cfg, 1, data, root / "run")
    model, cfg = load_trained(root / "run/model.pt", "cpu")
    test = PRVRDataset.for_model(root / "test.txt", root / "v.h5", root / "t.h5", cfg.model)
    return model, test


def _scores(model, dataset, precision="float32", batch_size=7):
    scores, positive = evaluate.split_scores(model, dataset, EvalConfig(precision=precision, batch_size=batch_size))
    return scores, positive, retrieval_metrics(scores, positive)


def test_float32_is_the_reference_evaluation(trained, monkeypatch):
    model, test = trained
    scores, positive, metrics = _scores(model, test)
    with monkeypatch.context() as patch:  # the evaluation as it was: no fast path anywhere, whole batches
        patch.setattr(attention, "_ONEDNN_LINEAR", {torch.float32: False, torch.bfloat16: False})
        patch.setattr(WindowedLayer, "_infer", lambda self, x, key_bias: self._forward(x, None, key_bias))
        patch.setattr(evaluate, "CPU_MODEL_VIDEOS", 10**6)
        ref_scores, ref_positive, ref_metrics = _scores(model, test)
    assert np.array_equal(positive, ref_positive) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=2e-6)
    assert metrics == ref_metrics
    assert metrics["SumR"] > 150  # trained: far above chance (~47 for 30 videos)


def test_bfloat16_is_close_to_float32_and_deterministic(trained):
    model, test = trained
    scores, positive, metrics = _scores(model, test)
    bf16, bf16_positive, bf16_metrics = _scores(model, test, "bfloat16")
    again, _, _ = _scores(model, test, "bfloat16")
    assert np.array_equal(bf16, again)  # the same numbers run to run
    other_batch, _, _ = _scores(model, test, "bfloat16", batch_size=30)  # another blocking of the products
    np.testing.assert_allclose(other_batch, bf16, rtol=0, atol=1e-4)
    assert np.array_equal(bf16_positive, positive) and bf16.dtype == np.float64
    difference = np.abs(bf16 - scores)
    assert 0 < difference.max() <= BF16_SCORE_TOL  # bfloat16 really ran, and stayed close
    assert abs(bf16_metrics["SumR"] - metrics["SumR"]) <= BF16_SUMR_TOL
    print(f"bfloat16 vs float32: max |score diff| {difference.max():.4f}, mean {difference.mean():.5f}, "
          f"SumR {bf16_metrics['SumR']:.2f} vs {metrics['SumR']:.2f}")


def test_bfloat16_outputs_are_float32(trained):
    model, test = trained
    videos = evaluate.encode_videos(model, test, 7, "cpu", precision="bfloat16")
    queries = evaluate.encode_queries(model, test, 7, "cpu", precision="bfloat16")
    assert videos["frame_tokens"].dtype == videos["clip_tokens"].dtype == queries.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # the context ended with the encoding


def test_micro_batches_change_nothing_but_rounding(trained, monkeypatch):
    model, test = trained
    whole = evaluate.encode_videos(model, test, 30, "cpu")
    monkeypatch.setattr(evaluate, "CPU_MODEL_VIDEOS", 4)
    pieces = evaluate.encode_videos(model, test, 30, "cpu")
    for key in whole:
        torch.testing.assert_close(pieces[key], whole[key], rtol=2e-6, atol=2e-6)


def test_unknown_precision_is_one_line(trained):
    model, test = trained
    with pytest.raises(ValueError, match=r"^eval.precision: unknown precision 'float16' \(known: float32, bfloat16\)$"):
        evaluate.split_scores(model, test, EvalConfig(precision="float16"))
