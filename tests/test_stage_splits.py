"""The evaluate job opens its split once (stages.split_dataset): every seed's evaluation and the collapse
diagnostics share one PRVRDataset while the split's files are unchanged, and a rewritten store is
opened again (never the stale features).
Run: .venv/bin/python -m pytest tests/test_stage_splits.py -q
"""
import shutil

import numpy as np
import pytest

from prvr.data import dataset as dataset_module
from prvr.store.feature_store import FeatureStore, write_features
from prvr import stages
from prvr.stages import evaluate_run, split_dataset
from prvr.training.trainer import TrainData, train
from test_trainer import _cfg


@pytest.fixture()
def split(tmp_path, data):
    """A private copy of conftest's features (this test rewrites one) and a model trained on them."""
    for name in ("v.h5", "t.h5", "train.txt", "val.txt"):
        shutil.copy(data.video_feats.parent / name, tmp_path / name)
    mine = TrainData(tmp_path / "train.txt", tmp_path / "val.txt", tmp_path / "v.h5", tmp_path / "t.h5")
    train(_cfg(epochs=1), 1, mine, tmp_path / "run")
    return mine, tmp_path / "run/model.pt"


def _count_opens(monkeypatch) -> list:
    opened = []
    real = dataset_module.PRVRDataset.__init__

    def counting(self, *args, **kwargs):
        opened.append(args[0])
        real(self, *args, **kwargs)
    monkeypatch.setattr(dataset_module.PRVRDataset, "__init__", counting)
    return opened


def test_a_split_is_opened_once_for_every_seed(tmp_path, monkeypatch, split):
    data, model = split
    opened = _count_opens(monkeypatch)
    first = evaluate_run(model, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m1.json", split="val")
    second = evaluate_run(model, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m2.json", split="val")
    assert len(opened) == 1 and first["metrics"] == second["metrics"]
    cfg = _cfg()
    assert split_dataset(data.val_captions, data.video_feats, data.text_feats, cfg.model) is \
        split_dataset(data.val_captions, data.video_feats, data.text_feats, cfg.model)
    assert len(opened) == 1


def test_a_rewritten_store_is_opened_again(tmp_path, monkeypatch, split):
    """Same path, new contents (the store rebuilt between two calls in one process): the new features
    are read, so the metrics are those of a fresh process."""
    data, model = split
    before = evaluate_run(model, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m1.json",
                          split="val")["metrics"]
    with FeatureStore(data.video_feats) as store:
        videos = {v: store[v] for v in store}
    rng = np.random.default_rng(5)
    write_features(data.video_feats, ((v, rng.normal(size=f.shape).astype(np.float32)) for v, f in videos.items()))
    opened = _count_opens(monkeypatch)
    after = evaluate_run(model, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m2.json",
                         split="val")["metrics"]
    assert len(opened) == 1 and after != before
    stages._opened_split.cache_clear()  # a fresh process
    fresh = evaluate_run(model, data.val_captions, data.video_feats, data.text_feats, tmp_path / "m3.json",
                         split="val")["metrics"]
    assert fresh == after
