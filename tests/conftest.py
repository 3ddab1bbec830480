"""Fixtures shared by several test modules."""
import h5py
import numpy as np
import pytest

from prvr.training.trainer import TrainData


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainData:
    """A tiny learnable training set (8-d features): 12 train and 6 val videos of 4-9 frames, two
    captions each whose token features are noisy copies of the video's mean frame. A module may
    define its own `data` fixture instead."""
    root = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    with h5py.File(root / "v.h5", "w") as fv, h5py.File(root / "t.h5", "w") as ft:
        for split, n in (("train", 12), ("val", 6)):
            lines = []
            for i in range(n):
                vid = f"{split}{i}"
                frames = rng.normal(size=(int(rng.integers(4, 10)), 8)).astype(np.float32)
                fv[vid] = frames
                for k in range(2):
                    cid = f"{vid}#enc#{k}"
                    ft[cid] = (frames.mean(0) + 0.1 * rng.normal(size=(int(rng.integers(2, 5)), 8))).astype(np.float32)
                    lines.append(f"{cid} caption {k} of {vid}\n")
            (root / f"{split}.txt").write_text("".join(lines))
    return TrainData(root / "train.txt", root / "val.txt", root / "v.h5", root / "t.h5")
