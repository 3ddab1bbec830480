"""MS-SL "BigFile" feature folders (I3D / ResNet frame features) and their conversion to our HDF5 layout.

The MS-SL baseline (HuiGuanLab/ms-sl, `utils/basic_utils.py` BigFile and `read_dict`; the paper's code
keeps the same loader for non-CLIP features) reads `<root>/<collection>/FeatureData/<feature>/`:

  shape.txt        first line "n_rows dim" (two integers)
  id.txt           the n_rows row (frame) ids, separated by any whitespace, decoded as ISO-8859-1
  feature.bin      n_rows x dim raw float32, native byte order (little-endian on the x86 machines that
                   wrote them), row-major, no header: row i starts at byte i * dim * 4
  video2frames.txt a Python dict literal {video_id: [frame_id, ...]}: a video's frames (row ids) in
                   temporal order; MS-SL reads it with eval() and then reads the rows one by one

and captions' RoBERTa token features from `<root>/<collection>/TextData/roberta_<collection>_query_feat.hdf5`:
one dataset per caption id at the file's root, (L, 1024), read as `f[caption_id][...]` - our
FeatureStore layout, so `FeatureStore(path)[caption_id]` reads it as it is (its last row is RoBERTa's
last token, not a CLIP end-of-text token).

    with BigFile("FeatureData/i3d_resnet") as bf:
        x = bf.video_features("friends_s01e01_seg02_clip_00")   # (n_frames, dim) float32, frame order
    bigfile_to_store("FeatureData/i3d_resnet", "tvr_i3d.h5")    # streamed, FeatureStore layout

The pipeline's `data.videos: released_bigfile` source imports a whole release through
prvr.sources.bigfile_release.

feature.bin is memory-mapped (numpy.memmap): nothing is read until a row is asked for.
video2frames.txt is parsed with ast.literal_eval (never eval). Every problem is one line naming the
file and, where there is one, the id: BigFileError (a missing or inconsistent file), UnknownIdError
(an id not in the folder), FeatureError (a video with a NaN or inf, found on conversion).
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prvr.errors import PrvrError
from prvr.store.feature_store import FeatureCheck, FeatureError, UnknownIdError, write_features

DTYPE = np.dtype("<f4")  # feature.bin: float32, little-endian, no header


class BigFileError(PrvrError, ValueError):
    """A BigFile folder is missing a file or its files disagree; the message names the file."""


def _read_shape(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise BigFileError(f"{path}: file not found (a BigFile folder needs shape.txt, id.txt, feature.bin)")
    line = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:1]
    fields = line[0].split() if line else []
    try:
        n_rows, dim = (int(f) for f in fields) if len(fields) == 2 else (None, None)
    except ValueError:
        n_rows = dim = None
    if n_rows is None or n_rows < 0 or dim < 1:
        raise BigFileError(f"{path}: expected 'n_rows dim' (two integers, dim >= 1) on the first line, "
                           f"got {(line[0] if line else '')[:80]!r}")
    return n_rows, dim


def _read_ids(path: Path, n_rows: int, shape_path: Path) -> list[str]:
    if not path.is_file():
        raise BigFileError(f"{path}: file not found")
    ids = [raw.decode("iso-8859-1") for raw in path.read_bytes().split()]  # as MS-SL: any whitespace
    if len(ids) != n_rows:
        raise BigFileError(f"{path}: {len(ids)} ids, but {shape_path.name} says {n_rows} rows")
    return ids


def _map_features(path: Path, n_rows: int, dim: int, shape_path: Path) -> np.ndarray:
    if not path.is_file():
        raise BigFileError(f"{path}: file not found")
    size, expected = path.stat().st_size, n_rows * dim * DTYPE.itemsize
    if size != expected:
        raise BigFileError(f"{path}: {size} bytes, but {shape_path.name} says {n_rows} x {dim} float32 = "
                           f"{expected} bytes ({'truncated' if size < expected else 'too long'} or wrong shape)")
    if n_rows == 0:  # numpy cannot map an empty file
        return np.empty((0, dim), dtype=DTYPE)
    return np.memmap(path, dtype=DTYPE, mode="r", shape=(n_rows, dim))


def _parse_video2frames(path: Path, index: dict[str, int]) -> dict[str, np.ndarray]:
    """video id -> row indices (int64) of its frames, in the file's order; every frame id must be a row."""
    if not path.is_file():
        raise BigFileError(f"{path}: file not found (needed to read features by video)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BigFileError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        mapping = ast.literal_eval(text.strip())
    except SyntaxError as err:
        raise BigFileError(f"{path}: not a Python dict literal (syntax error at line {err.lineno}, "
                           f"column {err.offset})") from None
    except (ValueError, TypeError, MemoryError, RecursionError) as err:
        raise BigFileError(f"{path}: not a Python dict literal ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(mapping, dict):
        raise BigFileError(f"{path}: expected a dict {{video_id: [frame_id, ...]}}, got {type(mapping).__name__}")
    rows: dict[str, np.ndarray] = {}
    for vid, frames in mapping.items():
        if not isinstance(vid, str):
            raise BigFileError(f"{path}: video id {vid!r} is not a string")
        if not isinstance(frames, (list, tuple)) or not all(isinstance(f, str) for f in frames):
            raise BigFileError(f"{path}: video {vid!r}: expected a list of frame id strings")
        if not frames:
            raise BigFileError(f"{path}: video {vid!r} has no frames")
        missing = next((f for f in frames if f not in index), None)
        if missing is not None:
            raise BigFileError(f"{path}: video {vid!r}: frame {missing!r} is not in id.txt")
        rows[vid] = np.fromiter((index[f] for f in frames), dtype=np.int64, count=len(frames))
    return rows


class BigFile:
    """Read-only MS-SL BigFile folder: `video_features(vid)`, `row(frame_id)`, `videos()`, `vid in bf`.

    shape.txt, id.txt and feature.bin are checked on opening (counts, byte size, duplicate ids);
    video2frames.txt is parsed, and every frame id it names checked, on the first use by video.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BigFileError(f"{self.folder}: BigFile folder not found")
        shape_path = self.folder / "shape.txt"
        self.n_rows, self.dim = _read_shape(shape_path)
        id_path = self.folder / "id.txt"
        self.ids = _read_ids(id_path, self.n_rows, shape_path)
        self._index: dict[str, int] = {}
        for i, frame_id in enumerate(self.ids):
            if self._index.setdefault(frame_id, i) != i:
                raise BigFileError(f"{id_path}: duplicate id {frame_id!r} (rows {self._index[frame_id]} and {i})")
        self._data = _map_features(self.folder / "feature.bin", self.n_rows, self.dim, shape_path)
        self._rows: dict[str, np.ndarray] | None = None  # video2frames.txt, parsed when first needed

    def __enter__(self) -> "BigFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the memory map (the file closes once no array read from it refers to it)."""
        self._data = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.dim

    def _features(self) -> np.ndarray:
        if self._data is None:
            raise BigFileError(f"{self.folder}: BigFile is closed")
        return self._data

    def _video_rows(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = _parse_video2frames(self.folder / "video2frames.txt", self._index)
        return self._rows

    def _row_index(self, frame_id: str) -> int:
        try:
            return self._index[frame_id]
        except (KeyError, TypeError):
            raise UnknownIdError(f"{self.folder / 'id.txt'}: unknown row id {frame_id!r}") from None

    def row(self, frame_id: str) -> np.ndarray:
        """One row (dim,) float32 by its id (MS-SL's read_one)."""
        return np.array(self._features()[self._row_index(frame_id)], dtype=np.float32)

    def rows(self, frame_ids: Iterable[str]) -> np.ndarray:
        """(k, dim) float32, in the order given."""
        index = np.fromiter((self._row_index(f) for f in frame_ids), dtype=np.int64)
        return np.asarray(self._features()[index], dtype=np.float32)

    def videos(self) -> list[str]:
        """Video ids of video2frames.txt, in its order."""
        return list(self._video_rows())

    def __contains__(self, vid: object) -> bool:
        return isinstance(vid, str) and vid in self._video_rows()

    def __len__(self) -> int:
        return len(self._video_rows())

    def frame_ids(self, vid: str) -> list[str]:
        return [self.ids[i] for i in self._video_frame_rows(vid)]

    def n_frames(self, vid: str) -> int:
        return len(self._video_frame_rows(vid))

    def _video_frame_rows(self, vid: str) -> np.ndarray:
        rows = self._video_rows().get(vid) if isinstance(vid, str) else None
        if rows is None:
            raise UnknownIdError(f"{self.folder / 'video2frames.txt'}: unknown video {vid!r}")
        return rows

    def video_features(self, vid: str) -> np.ndarray:
        """(n_frames, dim) float32: the video's frame rows in video2frames.txt's order (a copy)."""
        return np.asarray(self._features()[self._video_frame_rows(vid)], dtype=np.float32)


def bigfile_to_store(folder: str | Path, out_h5: str | Path, video_ids: Iterable[str] | None = None,
                     progress: bool = True) -> int:
    """Write the videos of a BigFile folder (all of video2frames.txt, in its order, or `video_ids`)
    to one HDF5 in our FeatureStore layout, one video at a time; returns the number written.

    Each video is checked as read (FeatureCheck: rows, one dimension, finite values), so a NaN is a
    FeatureError naming the folder and the video; the output appears only when every video was written.
    """
    bigfile = BigFile(folder)
    vids = bigfile.videos() if video_ids is None else list(video_ids)
    check = FeatureCheck(bigfile.folder, "video")

    def items() -> Iterator[tuple[str, np.ndarray]]:
        for vid in tqdm(vids, desc=f"BigFile {bigfile.folder.name}", unit="video", disable=not progress,
                        mininterval=2):
            yield vid, check(vid, bigfile.video_features(vid))

    attrs = {"source": "bigfile", "source_folder": str(bigfile.folder), "source_rows": bigfile.n_rows,
             "dim": bigfile.dim}
    try:
        return write_features(out_h5, items(), attrs=attrs)
    finally:
        bigfile.close()
