"""Read-only views of a feature cache's memory-mapped arrays (prvr.store.feature_cache): a split's frame
rows and its captions' tokens, read on access so a run holds only the batch it works on.

    frames = CachedRows(cache.frames, rows)     # frames[i], frames[a:b], frames[[i, j]]: copies of rows
    queries = CachedQueries(cache, caption_ids) # queries[caption id] -> (L, D) float16
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class CachedRows:
    """Rows `rows` of a mapped (N, ...) array, read on access: an array-like, read-only view.

    `view[i]`, `view[a:b]`, `view[[i, j]]` return in-memory copies of those rows (the array's dtype);
    `view.astype(t)` / np.asarray(view) read all of them. A contiguous run of rows reads as one slice.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self._array = array
        self._rows = np.asarray(rows, dtype=np.int64)
        n = len(self._rows)
        start = int(self._rows[0]) if n else 0
        self._start = start if n and np.array_equal(self._rows, np.arange(start, start + n)) else None
        self.shape = (n,) + tuple(array.shape[1:])
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            return self[key[0]][(slice(None),) * (not isinstance(key[0], (int, np.integer))) + key[1:]]
        if isinstance(key, (int, np.integer)):
            return np.array(self._array[self._rows[key]])
        if isinstance(key, slice) and self._start is not None:
            start, stop, step = key.indices(len(self))
            if step == 1:
                return np.array(self._array[self._start + start:self._start + max(start, stop)])
        return np.asarray(self._array[self._rows[key]])  # fancy indexing reads a copy

    def astype(self, dtype) -> np.ndarray:
        return self[:].astype(dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)


class CachedQueries(Mapping):
    """caption id -> (L, D) float16 tokens of a split's captions, read from the cache on access."""

    def __init__(self, cache, captions: Sequence[str]):
        """cache: a prvr.store.feature_cache.FeatureCache."""
        self._cache = cache
        self._rows = dict(zip(captions, cache.caption_rows(captions).tolist()))

    def __getitem__(self, caption: str) -> np.ndarray:
        return np.array(self._cache.query(self._rows[caption]))

    def lengths(self, captions: Sequence[str]) -> np.ndarray:
        """(C,) token counts of `captions`, from the cache's offsets (nothing read)."""
        rows = np.fromiter((self._rows[c] for c in captions), dtype=np.int64, count=len(captions))
        return np.diff(self._cache.offsets)[rows]

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
