"""HDF5 feature files in the layout of the PRVR code family (MS-SL, GMMFormer, the paper's code).

One float32 dataset per id at the file's root: a video id holds its frame features (n_frames, D),
a caption id (`<video_id>#enc#<k>`) holds its token features (L, D). File attributes carry
provenance (model, fps, ...); a dataset may carry its own attributes (e.g. `eot_index`).

    write_features("shard.h5", [("v1", feats)], attrs={"model": "ViT-L-14"})
    with FeatureStore("shard.h5") as store:
        x = store["v1"]                                # (n_frames, D) float32
    merge_stores(["s0.h5", "s1.h5"], "video_feats.h5")  # a duplicate id is an error
    check = FeatureCheck("shard.h5", "video")          # rows, one dimension, finite values
    x = check("v1", x)                                 # or FeatureError naming file and id

Files are written under a temporary name and renamed when complete (prvr.io.atomic_path).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from prvr.errors import PrvrError
from prvr.io import atomic_path


class FeatureStoreError(PrvrError, RuntimeError):
    """A feature file is missing, unreadable or inconsistent; the message names the file."""


class UnknownIdError(PrvrError, KeyError):
    """An id is not in a feature file. One-line message naming the file and the id."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of its argument
        return str(self.args[0])


class FeatureError(PrvrError, ValueError):
    """An entry's features cannot be used (no rows, not 2-D, another dimension, NaN or inf).
    One-line message naming the file and the id."""


class FeatureCheck:
    """Checks the arrays of one kind ('video', 'caption') read from one store, as they are read.

        check = FeatureCheck("video.h5", "video")
        feats = check("vid7", store["vid7"])   # the array itself, or FeatureError

    Each array must be 2-D with at least one row, have the dimension of the first array checked and
    hold only finite values: a bad entry found here names its id, where it would otherwise surface
    later as a shape error from np.stack, an IndexError, or a NaN loss naming no video.
    """

    def __init__(self, path: str | Path, kind: str):
        self.path = Path(path)
        self.kind = kind
        self.first: tuple[str, int] | None = None  # (id, dimension) of the first array checked

    def __call__(self, item_id: str, array: np.ndarray) -> np.ndarray:
        where = f"{self.path}: {self.kind} {item_id!r}"
        if array.ndim != 2:
            raise FeatureError(f"{where} has shape {array.shape}, expected 2-D (rows, dimension)")
        if array.shape[0] == 0:
            raise FeatureError(f"{where} has 0 rows")
        dim = array.shape[1]
        if self.first is None:
            self.first = (item_id, dim)
        elif dim != self.first[1]:
            raise FeatureError(f"{where} has dimension {dim}, expected {self.first[1]} "
                               f"(first {self.kind} {self.first[0]!r})")
        finite = np.isfinite(array)  # one vectorised pass; the slow path below runs only on bad data
        if not finite.all():
            row = int(np.flatnonzero(~finite.all(axis=1))[0])
            value = array[row][~finite[row]][0]
            raise FeatureError(f"{where}: {'NaN' if np.isnan(value) else str(value)} in row {row}")
        return array


def _check_id(item_id: str, path: Path) -> None:
    """HDF5 treats '/' as a group separator and '.' as the current group: refuse them as ids."""
    if not isinstance(item_id, str) or not item_id or "/" in item_id or item_id == ".":
        raise FeatureStoreError(f"{path}: invalid feature id {item_id!r} (non-empty, no '/')")


def _attr_value(value):
    """HDF5 attributes hold numbers, strings and arrays; store anything else as JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.ndarray)):
        return value
    return json.dumps(value, sort_keys=True)


def write_features(path: str | Path, items: Iterable[tuple[str, np.ndarray]], attrs: dict | None = None,
                   item_attrs: Callable[[str, np.ndarray], dict] | None = None) -> int:
    """Write (id, array) pairs as float32 datasets; returns the number written.

    attrs: file attributes, written after the items (so a generator may still fill them in).
    item_attrs(id, array) -> dict: attributes of each dataset.
    The file appears at `path` only if every item was written; a repeated id is an error.
    """
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            for item_id, array in items:
                _check_id(item_id, path)
                if item_id in out:
                    raise FeatureStoreError(f"{path}: duplicate feature id {item_id!r}")
                array = np.asarray(array, dtype=np.float32)
                if array.ndim != 2:
                    raise FeatureStoreError(f"{path}: features of {item_id!r} must be 2-D, got {array.shape}")
                dataset = out.create_dataset(item_id, data=array)
                for key, value in (item_attrs(item_id, array) if item_attrs else {}).items():
                    dataset.attrs[key] = _attr_value(value)
                count += 1
            for key, value in (attrs or {}).items():
                out.attrs[key] = _attr_value(value)
    return count


class FeatureStore:
    """Read-only access to one feature file: `store[id]`, `id in store`, `store.ids()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FeatureStoreError(f"{self.path}: feature file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise FeatureStoreError(f"{self.path}: not a readable HDF5 file ({err})") from None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _node(self, item_id: object):
        """The root-level dataset named `item_id`, or None ('/' would reach into groups)."""
        node = self._file.get(item_id) if isinstance(item_id, str) and "/" not in item_id else None
        return node if isinstance(node, h5py.Dataset) else None

    def _dataset(self, item_id: str) -> h5py.Dataset:
        node = self._node(item_id)
        if node is None:
            raise UnknownIdError(f"{self.path}: unknown feature id {item_id!r}")
        return node

    def __getitem__(self, item_id: str) -> np.ndarray:
        return self._dataset(item_id)[()]

    def __contains__(self, item_id: object) -> bool:
        return self._node(item_id) is not None

    def __len__(self) -> int:
        return len(self._file)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def ids(self) -> list[str]:
        """All ids, in HDF5's (alphabetical) order."""
        return list(self._file.keys())

    def shape(self, item_id: str) -> tuple[int, ...]:
        """Shape of one entry without reading it."""
        return self._dataset(item_id).shape

    @property
    def attrs(self) -> dict:
        """File attributes (provenance)."""
        return dict(self._file.attrs)

    def item_attrs(self, item_id: str) -> dict:
        """Attributes of one entry (e.g. a caption's `eot_index`)."""
        return dict(self._dataset(item_id).attrs)

    @property
    def dim(self) -> int | None:
        """Feature dimension D (None for an empty file)."""
        first = next(iter(self._file.values()), None)
        return None if first is None else first.shape[-1]


def merge_stores(shard_paths: Iterable[str | Path], out_path: str | Path) -> int:
    """Copy every dataset (with its attributes) of the shards into one file; returns the count.

    File attributes come from the first shard; a shard with a different feature dimension or an
    id already seen in another shard is an error naming both files.
    """
    out_path = Path(out_path)
    shard_paths = [Path(p) for p in shard_paths]
    seen: dict[str, Path] = {}
    dims: dict[int, Path] = {}
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as out:
            for index, shard_path in enumerate(shard_paths):
                with FeatureStore(shard_path) as shard:
                    if index == 0:
                        for key, value in shard.attrs.items():
                            out.attrs[key] = value
                    if shard.dim is not None:
                        dims.setdefault(shard.dim, shard_path)
                    if len(dims) > 1:
                        raise FeatureStoreError(f"{out_path}: shards differ in feature dimension "
                                                f"({', '.join(f'{p}: {d}' for d, p in dims.items())})")
                    for item_id in shard.ids():
                        if item_id in seen:
                            raise FeatureStoreError(f"{out_path}: id {item_id!r} is in both "
                                                    f"{seen[item_id]} and {shard_path}")
                        seen[item_id] = shard_path
                        shard._file.copy(shard._file[item_id], out, name=item_id)
            out.attrs["n_shards"] = len(shard_paths)
    return len(seen)
