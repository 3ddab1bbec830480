"""Where a dataset folder (`results/<dataset>`, made by the workflow) keeps a split's feature stores.

    text_store(Path("results/demo"), "test")    # results/demo/features/text/test.h5
    video_store(Path("results/demo"), "test")   # results/demo/features/video_feats.h5

The workflow writes each split's caption features to their own store (features/text/<split>.h5) and
the decoded videos of every split to one store (features/video_feats.h5), or, for imported released
features, each split's videos to features/video/<split>.h5. A folder made by hand with one store of
all the splits (`prvr text-features --out features/text_feats.h5`) is read as it is.
"""
from __future__ import annotations

from pathlib import Path


def text_store(data_dir: Path, split: str) -> Path:
    """The split's own caption store, else the folder's one store of every split's captions."""
    own = Path(data_dir) / "features" / "text" / f"{split}.h5"
    return own if own.exists() else Path(data_dir) / "features" / "text_feats.h5"


def video_store(data_dir: Path, split: str) -> Path:
    """The split's own video store (imported released features), else the one store of every video."""
    own = Path(data_dir) / "features" / "video" / f"{split}.h5"
    return own if own.exists() else Path(data_dir) / "features" / "video_feats.h5"
