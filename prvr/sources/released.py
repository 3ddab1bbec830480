"""Released features of the paper's authors: check them before any training, and import them.

The authors (admins97/MSC_PRVR, built on GMMFormer_v2, which keeps MS-SL's data layout) release, per
benchmark (collection tvr, activitynet, charades, qvhighlight), under `<root>/<collection>/`:

  FeatureData/<collection>_clip_L14.h5    video features: one dataset per video at the file's root,
                                          read as f[video_id][...] -> (n_frames, 768) (CLIP ViT-L/14)
  TextData/<collection>_clip_L14.h5       text features, THE SAME FILE NAME in another folder: one
                                          dataset per caption id at the root, f[caption_id][...] ->
                                          (L, 768), one row per CLIP token up to the end-of-text token
  TextData/<collection><split>.caption.txt  MS-SL caption files, "<vid>#enc#<k> <caption>" per line
                                          (split: train, val; test where there is one)

Their loader (src/Datasets/data_provider.py) keeps the first 77 caption rows (`max_desc_l`), l2-normalises
each row, and takes the last kept row as the caption's frozen CLIP embedding (`encode_clip_query`: row
count - 1): the same reading as our layout (prvr.store.feature_store), where the last row of a caption is
its end-of-text token. For other features (MS-SL's I3D/ResNet BigFile folders, RoBERTa text HDF5) see
prvr.sources.bigfile.

Differences from our layout, which import_released removes:
  * ActivityNet: caption files name videos "v_<youtube id>" but the video file's keys drop the "v_"
    (their loader reads f[video_id[2:]]); caption ids keep it. Pass video_prefix="v_" (released_layout
    does); the not-found error suggests it when the stripped id is in the file.
  * dtype: their loaders cast after reading (`.float()`), so a file may hold float16 or float64; ours
    is float32 (a non-float dtype is an error).
  * attributes: none in theirs; ours gives each caption `eot_index` = L - 1 and files provenance.
  * QVHighlights "clipsf" features: video 2816 (SlowFast 2304 + CLIP 512) vs text 512, dimensions that
    differ by design: pass video_dim / text_dim.

    paths = released_layout("/data/prvr", "activitynet")   # video_h5, text_h5, caption_files, video_prefix
    summary = validate_released(**paths)                   # or a one-line error naming file and id
    import_released(**paths, out_video_h5="act_video.h5", out_text_h5="act_text.h5")

Both stream: the caption files are read whole (ids only); feature files one dataset at a time (a
14 GB file is never loaded), with tqdm progress. Checks, in this order, each failing with ONE line that
names the file and the first bad id (caption-file order):
  1. every video of every caption file is in the video store, every caption id in the text store
     (UnknownIdError: "<video h5>: video 'x' (in tvrtest.caption.txt) not found");
  2. every entry is a float dataset of 2-D shape with at least one row and the expected dimension:
     video_dim / text_dim where given, else expected_dim for both, else the first video's; the text
     dimension must equal the video dimension unless video_dim or text_dim is given (FeatureError);
  3. every value is finite (FeatureError: "<text h5>: caption 'x#enc#0' row 3 has NaN").
The video source may also be a BigFile folder (prvr.sources.bigfile), e.g. MS-SL's I3D features with
RoBERTa text (video_dim=3072 or 2048, text_dim=1024).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from prvr.errors import AnnotationError
from prvr.sources.bigfile import BigFile
from prvr.store.feature_store import FeatureError, FeatureStoreError, UnknownIdError, write_features
from prvr.store.splits import read_caption_txt, video_of

COLLECTIONS = ("tvr", "activitynet", "charades", "qvhighlight")
VIDEO_PREFIX = {"activitynet": "v_"}  # caption-file prefix the authors' video keys drop
SPLITS = ("train", "val", "test")


def released_layout(root: str | Path, collection: str, splits=SPLITS) -> dict:
    """The authors' paths for one collection under `root` (their `data_root`), as keyword arguments of
    validate_released / import_released: video_h5, text_h5, caption_files {split: path}, video_prefix."""
    base = Path(root) / collection
    return {"video_h5": base / "FeatureData" / f"{collection}_clip_L14.h5",
            "text_h5": base / "TextData" / f"{collection}_clip_L14.h5",
            "caption_files": {s: base / "TextData" / f"{collection}{s}.caption.txt" for s in splits},
            "video_prefix": VIDEO_PREFIX.get(collection)}


class _H5Source:
    """Root datasets of one HDF5 file: shape and dtype without reading, values one dataset at a time."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise FeatureStoreError(f"{path}: feature file not found")
        try:
            self.file = h5py.File(path, "r")
        except OSError as err:
            raise FeatureStoreError(f"{path}: not a readable HDF5 file ({err})") from None

    def node(self, key: str):
        """The object at the root named `key` (dataset or group), or None."""
        if not key or "/" in key or key == ".":
            return None
        return self.file.get(key)

    def meta(self, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
        node = self.node(key)
        if node is None:
            return None
        if not isinstance(node, h5py.Dataset):
            return (), None  # a group: reported by _check_meta
        return node.shape, node.dtype

    def read(self, key: str) -> np.ndarray:
        return self.file[key][()]

    def __len__(self) -> int:
        return len(self.file)

    def close(self) -> None:
        self.file.close()


class _BigFileSource:
    """A BigFile folder as a video source (keys are video ids of video2frames.txt)."""

    def __init__(self, path: Path):
        self.path = path
        self.bigfile = BigFile(path)
        len(self.bigfile)  # parse video2frames.txt now: its errors come before any other

    def meta(self, key: str):
        if key not in self.bigfile:
            return None
        return (self.bigfile.n_frames(key), self.bigfile.dim), np.dtype(np.float32)

    def read(self, key: str) -> np.ndarray:
        return self.bigfile.video_features(key)

    def __len__(self) -> int:
        return len(self.bigfile)

    def close(self) -> None:
        self.bigfile.close()


def _open_source(path: Path):
    return _BigFileSource(path) if path.is_dir() else _H5Source(path)


def _finite(array: np.ndarray, where: str) -> None:
    finite = np.isfinite(array)  # one vectorised pass; the search below runs only on bad data
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        value = array[row][~finite[row]][0]
        raise FeatureError(f"{where} row {row} has {'NaN' if np.isnan(value) else str(value)}")


class _Release:
    """Caption files indexed, both stores open, ids and shapes checked (passes 1 and 2 above)."""

    def __init__(self, video_h5, text_h5, caption_files: Mapping[str, str | Path], expected_dim=None,
                 video_dim=None, text_dim=None, video_prefix=None, progress=True, other_caption_key=None):
        if not caption_files:
            raise AnnotationError("validate_released: no caption files given")
        self.video_prefix = video_prefix or None
        self.other_caption_key = other_caption_key  # cap id -> the file's key when the id itself is absent
        self.caption_keys: dict[str, str] = {}
        self.progress = progress
        self.splits: dict[str, dict] = {}
        self.videos: dict[str, str] = {}   # caption-file video id -> its key in the video store
        self.captions: list[str] = []      # distinct caption ids, caption-file order
        self.captions_seen: set[str] = set()
        lines: list[tuple[str, str, str]] = []  # (caption id, video id, caption file name), file order
        for split, path in caption_files.items():
            path = Path(path)
            rows = read_caption_txt(path)
            if not rows:
                raise AnnotationError(f"{path}: no captions in file")
            vids = {video_of(c) for c, _ in rows}
            self.splits[split] = {"file": str(path), "videos": len(vids), "captions": len(rows)}
            lines.extend((c, video_of(c), path.name) for c, _ in rows)

        self.video_path, self.text_path = Path(video_h5), Path(text_h5)
        self.video = _open_source(self.video_path)
        try:
            self.text = _H5Source(self.text_path)
        except BaseException:
            self.video.close()
            raise
        try:
            self._index(lines, expected_dim, video_dim, text_dim)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.video.close()
        self.text.close()

    def key(self, vid: str) -> str:
        prefix = self.video_prefix
        return vid[len(prefix):] if prefix and vid.startswith(prefix) else vid

    def _video_label(self, vid: str) -> str:
        key = self.key(vid)
        return f"video {vid!r}" if key == vid else f"video {key!r} (of {vid!r})"

    def _missing_video(self, vid: str, file_name: str) -> UnknownIdError:
        key = self.key(vid)
        what = f"{self.video_path}: video {key!r} ({'' if key == vid else f'of {vid!r}, '}in {file_name}) not found"
        if key == vid and vid.startswith("v_") and self.video.meta(vid[2:]) is not None:
            what += f"; the file has {vid[2:]!r}: pass video_prefix='v_' (the authors' ActivityNet layout)"
        elif key != vid and self.video.meta(vid) is not None:
            what += f"; the file has {vid!r}: pass video_prefix=None"
        return UnknownIdError(what)

    @staticmethod
    def _check_meta(path: Path, label: str, meta, dim: int | None, dim_source: str) -> None:
        shape, dtype = meta
        where = f"{path}: {label}"
        if dtype is None:
            raise FeatureError(f"{where} is a group, expected a dataset (rows, dimension)")
        if not np.issubdtype(dtype, np.floating):
            raise FeatureError(f"{where} has dtype {dtype}, expected floating point")
        if len(shape) != 2:
            raise FeatureError(f"{where} has shape {shape}, expected 2-D (rows, dimension)")
        if shape[0] == 0 or shape[1] == 0:
            raise FeatureError(f"{where} is empty (shape {shape})")
        if dim is not None and shape[1] != dim:
            raise FeatureError(f"{where} has dimension {shape[1]}, expected {dim} ({dim_source})")

    def _index(self, lines, expected_dim, video_dim, text_dim) -> None:
        """Pass 1 and 2, in caption-file order: ids present, entries float 2-D non-empty, dimensions."""
        same_dim = video_dim is None and text_dim is None
        vdim = video_dim if video_dim is not None else expected_dim
        tdim = text_dim if text_dim is not None else expected_dim
        vsource = "video_dim" if video_dim is not None else "expected_dim"
        tsource = "text_dim" if text_dim is not None else "expected_dim"
        frames, tokens, video_dtypes, text_dtypes = [], [], set(), set()
        for cap_id, vid, file_name in tqdm(lines, desc="index", unit="caption", disable=not self.progress,
                                           mininterval=2):
            if vid not in self.videos:
                meta = self.video.meta(self.key(vid))
                if meta is None:
                    raise self._missing_video(vid, file_name)
                self._check_meta(self.video_path, self._video_label(vid), meta, vdim, vsource)
                if vdim is None:
                    vdim, vsource = meta[0][1], f"first video {vid!r}"
                    if same_dim and tdim is None:
                        tdim, tsource = vdim, (f"the video dimension, {vsource} in {self.video_path}; pass "
                                               f"video_dim= and text_dim= if they differ by design")
                self.videos[vid] = self.key(vid)
                frames.append(meta[0][0])
                video_dtypes.add(str(meta[1]))
            if cap_id not in self.captions_seen:
                meta = self.text.meta(cap_id)
                self.caption_keys[cap_id] = cap_id
                if meta is None and self.other_caption_key is not None:
                    self.caption_keys[cap_id] = self.other_caption_key(cap_id)
                    meta = self.text.meta(self.caption_keys[cap_id])
                if meta is None:
                    raise UnknownIdError(f"{self.text_path}: caption {cap_id!r} (in {file_name}) not found")
                self._check_meta(self.text_path, f"caption {cap_id!r}", meta, tdim, tsource)
                if tdim is None:
                    tdim, tsource = meta[0][1], f"first caption {cap_id!r}"
                self.captions_seen.add(cap_id)
                self.captions.append(cap_id)
                tokens.append(meta[0][0])
                text_dtypes.add(str(meta[1]))
        self.video_dim, self.text_dim = vdim, tdim
        self.stats = {"frames": _stats(frames), "tokens": _stats(tokens),
                      "video_dtype": ",".join(sorted(video_dtypes)), "text_dtype": ",".join(sorted(text_dtypes))}

    def iter_videos(self) -> Iterator[tuple[str, np.ndarray]]:
        """(caption-file video id, float32 (n_frames, D)) in first-seen order, each checked finite."""
        for vid, key in tqdm(self.videos.items(), desc=f"videos {self.video_path.name}", unit="video",
                             disable=not self.progress, mininterval=2):
            array = np.asarray(self.video.read(key), dtype=np.float32)
            _finite(array, f"{self.video_path}: {self._video_label(vid)}")
            yield vid, array

    def iter_captions(self) -> Iterator[tuple[str, np.ndarray]]:
        """(caption id, float32 (L, D)) in caption-file order, each checked finite."""
        for cap_id in tqdm(self.captions, desc=f"captions {self.text_path.name}", unit="caption",
                           disable=not self.progress, mininterval=2):
            array = np.asarray(self.text.read(self.caption_keys[cap_id]), dtype=np.float32)
            _finite(array, f"{self.text_path}: caption {cap_id!r}")
            yield cap_id, array

    def summary(self) -> dict:
        return {"video_h5": str(self.video_path), "text_h5": str(self.text_path), "splits": self.splits,
                "videos": len(self.videos), "captions": len(self.captions),
                "video_dim": int(self.video_dim), "text_dim": int(self.text_dim),
                "video_prefix": self.video_prefix,
                "unused_videos": len(self.video) - len(self.videos),
                "unused_captions": len(self.text) - len(self.captions), **self.stats}


def _stats(values: list[int]) -> dict:
    return {"min": int(min(values)), "max": int(max(values)), "mean": float(np.mean(values))}


def validate_released(video_h5, text_h5, caption_files: Mapping[str, str | Path], expected_dim: int | None = None,
                      *, video_dim: int | None = None, text_dim: int | None = None,
                      video_prefix: str | None = None, progress: bool = True, other_caption_key=None) -> dict:
    """Check released features against their caption files before any training (see the module doc);
    the first problem raises a one-line PrvrError naming the file and the id. Returns a summary:

        {"splits": {split: {"file", "videos", "captions"}}, "videos", "captions" (distinct, all splits),
         "video_dim", "text_dim", "video_dtype", "text_dtype", "frames"/"tokens": {"min","max","mean"},
         "unused_videos", "unused_captions" (entries of the files no caption file uses), ...}

    video_h5: an HDF5 file (the authors' layout) or a BigFile folder. video_prefix: the prefix of
    caption-file video ids that the video keys lack ("v_" for the authors' ActivityNet).
    """
    release = _Release(video_h5, text_h5, caption_files, expected_dim, video_dim, text_dim, video_prefix, progress,
                       other_caption_key)
    try:
        for _ in release.iter_videos():
            pass
        for _ in release.iter_captions():
            pass
        return release.summary()
    finally:
        release.close()


def import_released(video_h5, text_h5, caption_files: Mapping[str, str | Path], out_video_h5, out_text_h5,
                    expected_dim: int | None = None, *, video_dim: int | None = None, text_dim: int | None = None,
                    video_prefix: str | None = None, progress: bool = True, other_caption_key=None) -> dict:
    """Validate (as validate_released, in the same single pass) and write our layout: the entries the
    caption files use, keyed as in the caption files (the "v_" put back), float32, each caption with
    `eot_index` = L - 1, provenance in the file attributes. Streamed, one dataset at a time; both outputs
    appear only when both are complete. other_caption_key: the key to try where a caption id is not in
    the text file (DL-DKD's teacher file: "<vid>#<k>"). Returns validate_released's summary with the
    output paths."""
    sources = {Path(video_h5).resolve(), Path(text_h5).resolve()}
    for out in (out_video_h5, out_text_h5):
        if Path(out).resolve() in sources:
            raise FeatureStoreError(f"{out}: import_released would overwrite its own input")
    release = _Release(video_h5, text_h5, caption_files, expected_dim, video_dim, text_dim, video_prefix, progress,
                       other_caption_key)
    try:
        common = {"source": "released", "video_prefix": video_prefix or "",
                  "caption_files": {s: info["file"] for s, info in release.splits.items()}}
        write_features(out_video_h5, release.iter_videos(),
                       attrs={**common, "kind": "video", "source_file": str(release.video_path),
                              "source_dtype": release.stats["video_dtype"]})
        try:
            write_features(out_text_h5, release.iter_captions(),
                           attrs={**common, "kind": "text", "source_file": str(release.text_path),
                                  "source_dtype": release.stats["text_dtype"]},
                           item_attrs=lambda _, array: {"eot_index": int(array.shape[0] - 1)})
        except BaseException:
            Path(out_video_h5).unlink(missing_ok=True)  # no half import: both files or neither
            raise
        return {**release.summary(), "out_video_h5": str(out_video_h5), "out_text_h5": str(out_text_h5)}
    finally:
        release.close()
