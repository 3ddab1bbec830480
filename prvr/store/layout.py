"""Where a dataset folder (`results/<dataset>`, made by the workflow) keeps a split's feature stores.

    text_store(Path("results/demo"), "test")    # results/demo/features/text/test.h5
    video_store(Path("results/demo"), "test")   # results/demo/features/video/test.h5

The workflow writes each split's caption and video features to stores of their own
(features/text/<split>.h5, features/video/<split>.h5: split_text_store, split_video_store). A folder
made by hand with one store of all the splits (`prvr text-features --out features/text_feats.h5`) is
read as it is.
"""
from __future__ import annotations

from pathlib import Path


def split_text_store(data_dir: Path, split: str) -> Path:
    """Where the workflow writes a split's caption store."""
    return Path(data_dir) / "features" / "text" / f"{split}.h5"


def split_video_store(data_dir: Path, split: str) -> Path:
    """Where the workflow writes a split's video store."""
    return Path(data_dir) / "features" / "video" / f"{split}.h5"


def text_store(data_dir: Path, split: str) -> Path:
    """The split's own caption store, else the folder's one store of every split's captions."""
    own = split_text_store(data_dir, split)
    return own if own.exists() else Path(data_dir) / "features" / "text_feats.h5"


def video_store(data_dir: Path, split: str) -> Path:
    """The split's own video store, else the folder's one store of every video."""
    own = split_video_store(data_dir, split)
    return own if own.exists() else Path(data_dir) / "features" / "video_feats.h5"
