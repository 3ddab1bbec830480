"""MS-SL's released features of the I3D-feature baselines as one pipeline source (`data.videos:
released_bigfile`): a BigFile folder of frame features and a RoBERTa caption HDF5, checked against
model.input_dim, then validated against every caption file and imported by
prvr.sources.released.import_released (videos and captions present, dimensions, finite values; the
first bad id named):

    paths = bigfile_layout("/data/ms-sl", "tvr", "i3d_resnet")   # bigfile_dir, text_h5, caption_files
    import_bigfile_release(**paths, out_video_h5="tvr_video.h5", out_text_h5="tvr_text.h5",
                           input_dim=3072, text_input_dim=768)
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py

from prvr.sources.bigfile import BigFile
from prvr.sources.released import import_released
from prvr.store.feature_store import FeatureError
from prvr.store.splits import read_caption_txt


def bigfile_layout(root: str | Path, collection: str, feature: str, splits=("train", "val", "test")) -> dict:
    """MS-SL's paths under its `rootpath` (method/train.py): the BigFile folder of `feature`
    (tvr: i3d_resnet, activitynet: i3d, charades: i3d_rgb_lgi), the RoBERTa caption HDF5 and the
    caption files <collection><split>.caption.txt."""
    base = Path(root) / collection
    return {"bigfile_dir": base / "FeatureData" / feature,
            "text_h5": base / "TextData" / f"roberta_{collection}_query_feat.hdf5",
            "caption_files": {s: base / "TextData" / f"{collection}{s}.caption.txt" for s in splits}}


def _text_dim(text_h5: Path, caption_files: Mapping[str, str | Path]) -> tuple[str, int] | None:
    """(first caption id of the caption files, its row dimension) in the text HDF5, if both exist."""
    first = next((c for path in caption_files.values() for c, _ in read_caption_txt(Path(path))[:1]), None)
    if first is None or not Path(text_h5).is_file():
        return None  # import_released reports the missing file or the empty caption file
    try:
        with h5py.File(text_h5, "r") as f:
            shape = getattr(f.get(first) if "/" not in first else None, "shape", ())
    except OSError:
        return None  # not HDF5: import_released says so in its own words
    return (first, int(shape[1])) if len(shape) == 2 else None


def import_bigfile_release(bigfile_dir: str | Path, text_h5: str | Path, caption_files: Mapping[str, str | Path],
                           out_video_h5: str | Path, out_text_h5: str | Path, input_dim: int,
                           text_input_dim: int | None = None, video_prefix: str | None = None,
                           progress: bool = True) -> dict:
    """Validate MS-SL's BigFile folder and RoBERTa caption HDF5 against the caption files and import
    them into our layout (prvr.sources.released.import_released: ids, dimensions, finite values, one pass).
    The frames must have `input_dim` (model.input_dim) and the captions `text_input_dim`
    (model.text_input_dim; None: input_dim); a folder or file of another dimension is a FeatureError
    naming it and the key to set before anything is read."""
    text_dim = input_dim if text_input_dim is None else text_input_dim
    with BigFile(bigfile_dir) as bigfile:
        if bigfile.dim != input_dim:
            raise FeatureError(f"{bigfile.folder}: BigFile rows have dimension {bigfile.dim}, but "
                               f"model.input_dim is {input_dim} (set it to the feature's dimension)")
    first = _text_dim(Path(text_h5), caption_files)
    if first is not None and first[1] != text_dim:
        key = "model.text_input_dim" if text_input_dim is not None else "model.text_input_dim (unset: model.input_dim)"
        raise FeatureError(f"{text_h5}: caption {first[0]!r} has dimension {first[1]}, but {key} is {text_dim} "
                           f"(set model.text_input_dim to the caption features' dimension)")
    summary = import_released(bigfile_dir, text_h5, caption_files, out_video_h5, out_text_h5,
                              video_dim=input_dim, text_dim=text_dim, video_prefix=video_prefix,
                              progress=progress)
    return {**summary, "source": "released_bigfile"}
