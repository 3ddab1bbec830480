"""Resampled float16 feature caches: built once from the stores, shared by every run.

Reading a TVR-size split from the HDF5 stores resamples every video again and holds the split as
float32 in RAM (17k x 128 x 768 x 4 B = 6.9 GB of frames for TVR train, plus the captions' tokens).
A cache does that work once for the caption files it is built from (the workflow builds one per
split, from that split's stores) and writes the result to disk where each run maps it read-only
(np.load(mmap_mode="r")): a dataset made from it gathers its rows on access, so a run holds only the
batch it works on.

    build_feature_cache("results/tvr/cache/ft128_q77/train", ["train.caption.txt"],
                        "video/train.h5", "text/train.h5", frame_tokens=128, max_query_len=77)
    cache = open_cache("results/tvr/cache/ft128_q77/train", ["train.caption.txt"], "video/train.h5",
                       "text/train.h5", frame_tokens=128, max_query_len=77)   # or StaleCacheError
    ds = PRVRDataset.from_cache(cache, "train.txt")

Layout: a directory (renamed into place only when complete, like prvr.io.atomic_path's files):
    index.json         format, frame_tokens, max_query_len, dtype, the video ids and caption ids in
                       row order, the captions cut at max_query_len, the source files' fingerprints
                       (path, size, mtime, sha256), a hash of the resampling code, the array shapes
    frames.npy         (V, frame_tokens, Dv) float16: resample_frames(video) (the authors'
                       average_to_fixed_length, computed in float64, rounded to float32) rounded to float16
    query_tokens.npy   (sum of L, Dt) float16: each caption's first min(L, max_query_len) token rows,
                       ragged (not padded), captions in index order
    query_offsets.npy  (C + 1,) int64: caption c is rows offsets[c]:offsets[c + 1] of query_tokens

float16 rounding: every value is the float32 value rounded to nearest float16: a relative error of at
most 2^-11 (4.9e-4) for |x| >= 6.1e-5, an absolute error of at most 2^-25 (3e-8) below; a value
beyond 65504 would overflow and is refused (FeatureError naming the store and the id). Models trained
or evaluated from the cache therefore see inputs within that rounding of the store path's.

Every array is checked as it is read from the stores (prvr.store.feature_store.FeatureCheck: rows,
one dimension, finite values), so a bad entry is named by file and id, as the store path names it.
The frames file is written through np.lib.format.open_memmap a block of videos at a time, so the
corpus is never in RAM. A cache built from other inputs (another caption file, another store,
another frame_tokens or max_query_len, another resampling code) is refused by `check_inputs` with a
one-line StaleCacheError naming the index file and what differs.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from prvr.errors import PrvrError
from prvr.io import TEMP_SUFFIX, _umask
from prvr.store.feature_store import FeatureCheck, FeatureError, FeatureStore
from prvr.store.resample import resample_edges, resample_frames
from prvr.store.splits import read_split

FORMAT = "prvr-feature-cache"
VERSION = 1
INDEX = "index.json"
FRAMES = "frames.npy"
TOKENS = "query_tokens.npy"
OFFSETS = "query_offsets.npy"
DTYPE = np.float16
BLOCK_BYTES = 64 << 20  # rows gathered in RAM before each write to the memmap (bounds the build's RSS)


class CacheError(PrvrError, ValueError):
    """A feature cache is missing, incomplete or inconsistent; the message names the file."""


class StaleCacheError(CacheError):
    """A feature cache was built from other inputs or settings than a run asks for."""


def resample_code_hash() -> str:
    """sha256 of the resampling code's source: a cache made by other resampling code is stale."""
    source = inspect.getsource(resample_edges) + inspect.getsource(resample_frames)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _fingerprint(path: Path) -> dict:
    from prvr.provenance import sha256_file
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256_file(path)}


def _same_file(path: Path, recorded: dict) -> bool:
    """Whether `path` holds the bytes recorded: trusted without reading when the path, size and
    mtime are the recorded ones, else decided by sha256 (a copy of the same file is the same)."""
    from prvr.provenance import sha256_file
    stat = path.stat()
    if (str(path.resolve()), stat.st_size, stat.st_mtime_ns) == (recorded["path"], recorded["size"],
                                                                 recorded["mtime_ns"]):
        return True
    return sha256_file(path) == recorded["sha256"]


def _to_half(array: np.ndarray, store: Path, kind: str, item_id: str) -> np.ndarray:
    """array rounded to float16, or FeatureError naming the store and the id if a value overflows."""
    with np.errstate(over="ignore"):  # reported below, naming the entry
        half = array.astype(DTYPE)
    finite = np.isfinite(half)
    if not finite.all():
        row = int(np.flatnonzero(~finite.reshape(len(half), -1).all(axis=1))[0])
        value = array[row][~finite[row]][0]
        raise FeatureError(f"{store}: {kind} {item_id!r}: value {value:.6g} in row {row} overflows float16 "
                           f"(|x| > 65504); the feature cache cannot hold it")
    return half


class _BlockWriter:
    """Rows written to an .npy file through np.lib.format.open_memmap a block at a time: the block is
    filled in RAM, then copied into the mapped file, flushed and unmapped (so RSS stays ~ a block)."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path, self.shape = path, shape
        np.lib.format.open_memmap(path, mode="w+", dtype=DTYPE, shape=shape).flush()
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(DTYPE).itemsize)
        self.block = np.empty((max(1, min(shape[0], BLOCK_BYTES // row_bytes)),) + shape[1:], DTYPE)
        self.start = 0  # first file row of the block
        self.filled = 0  # rows of the block filled

    def write(self, rows: np.ndarray) -> None:
        """Append rows (n, *shape[1:]); n may exceed a block."""
        done = 0
        while done < len(rows):
            take = min(len(rows) - done, len(self.block) - self.filled)
            self.block[self.filled:self.filled + take] = rows[done:done + take]
            self.filled += take
            done += take
            if self.filled == len(self.block):
                self.flush()

    def flush(self) -> None:
        if self.filled:
            out = np.lib.format.open_memmap(self.path, mode="r+")
            out[self.start:self.start + self.filled] = self.block[:self.filled]
            out.flush()
            del out
            self.start += self.filled
            self.filled = 0

    def close(self) -> None:
        self.flush()
        if self.start != self.shape[0]:
            raise CacheError(f"{self.path}: wrote {self.start} rows, expected {self.shape[0]}")


def _write_frames(path: Path, videos: Sequence[str], video_store: Path, frame_tokens: int) -> int:
    """frames.npy (V, frame_tokens, D); returns D."""
    check = FeatureCheck(video_store, "video")
    writer = None
    with FeatureStore(video_store) as store:
        for vid in videos:
            resampled = resample_frames(check(vid, store[vid]), frame_tokens)  # (Nf, D) float32
            if writer is None:
                writer = _BlockWriter(path, (len(videos),) + resampled.shape)
            writer.write(_to_half(resampled, video_store, "video", vid)[None])
    writer.close()
    return writer.shape[-1]


def _write_queries(path: Path, captions: Sequence[str], text_store: Path,
                   max_query_len: int | None) -> tuple[np.ndarray, list[int], int]:
    """query_tokens.npy (sum L, D); returns the (C + 1,) offsets, the cut captions' indices and D."""
    check = FeatureCheck(text_store, "caption")
    with FeatureStore(text_store) as store:
        lengths = []
        for cap in captions:  # shapes first (no data read) to size the file
            shape = store.shape(cap)
            if len(shape) != 2 or shape[0] == 0:
                check(cap, store[cap])  # raises, naming the store and the id
            lengths.append(shape[0])
        lengths = np.asarray(lengths, dtype=np.int64)
        kept = lengths if max_query_len is None else np.minimum(lengths, max_query_len)
        offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        truncated = np.flatnonzero(kept < lengths).tolist()
        writer = None
        for cap, n in zip(captions, kept):
            tokens = check(cap, store[cap])[:n]
            if writer is None:
                writer = _BlockWriter(path, (int(offsets[-1]), tokens.shape[1]))
            writer.write(_to_half(tokens, text_store, "caption", cap))
    writer.close()
    return offsets, truncated, writer.shape[-1]


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename the finished directory onto `out` (an older one there is removed after)."""
    os.chmod(tmp, 0o777 & ~_umask())
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=TEMP_SUFFIX, dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_feature_cache(out_dir: str | Path, caption_files: Iterable[str | Path], video_store: str | Path,
                        text_store: str | Path, frame_tokens: int, max_query_len: int | None) -> Path:
    """Build the cache of every video and caption of `caption_files` (a split, or several) into the
    directory `out_dir`; returns its path. Videos and captions are in first-seen order over the
    files, so each split's videos are one contiguous block of rows (read sequentially).

    The directory is written under a temporary name beside out_dir (`.<name>.<random>.prvr.tmp`, safe
    to delete if a killed build leaves it) and renamed onto out_dir when complete.
    """
    if frame_tokens < 1:
        raise ValueError(f"frame_tokens must be >= 1, got {frame_tokens}")
    if max_query_len is not None and max_query_len < 1:
        raise ValueError(f"max_query_len must be >= 1 or None, got {max_query_len}")
    out_dir = Path(out_dir)
    caption_files = [Path(p) for p in caption_files]
    video_store, text_store = Path(video_store), Path(text_store)
    if not caption_files:
        raise ValueError("build_feature_cache: no caption files")
    splits = [read_split(path) for path in caption_files]
    videos = list(dict.fromkeys(v for split in splits for v in split.videos))
    captions = list(dict.fromkeys(c for split in splits for c in split.caption_ids))
    sources = {"captions": [_fingerprint(p) for p in caption_files],
               "video_store": _fingerprint(video_store), "text_store": _fingerprint(text_store)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=TEMP_SUFFIX, dir=out_dir.parent))
    try:
        video_dim = _write_frames(tmp / FRAMES, videos, video_store, frame_tokens)
        offsets, truncated, text_dim = _write_queries(tmp / TOKENS, captions, text_store, max_query_len)
        np.save(tmp / OFFSETS, offsets)
        index = {"format": FORMAT, "version": VERSION, "frame_tokens": frame_tokens,
                 "max_query_len": max_query_len, "dtype": np.dtype(DTYPE).name,
                 "video_dim": video_dim, "text_dim": text_dim, "resample_code": resample_code_hash(),
                 "arrays": {FRAMES: [len(videos), frame_tokens, video_dim],
                            TOKENS: [int(offsets[-1]), text_dim], OFFSETS: [len(captions) + 1]},
                 "sources": sources, "videos": videos, "captions": captions, "truncated": truncated}
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


class FeatureCache:
    """A built cache, mapped read-only: `frames` (V, Nf, D) and `tokens` (sum L, D) float16 memmaps,
    `offsets` (C + 1,) int64, `videos` / `captions` ids in row order.

        cache = FeatureCache("results/tvr/cache/ft128_q77/train")
        cache.query("v1#enc#0")          # (L, D) float16 view of the mapped file
        cache.video_rows(["v1", "v7"])   # their rows in `frames`
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.index_file = self.path / INDEX
        if not self.index_file.is_file():
            raise CacheError(f"{self.path}: not a feature cache (no {INDEX}); build it with "
                             f"build_feature_cache")
        try:
            index = json.loads(self.index_file.read_text())
        except (OSError, ValueError) as err:
            raise CacheError(f"{self.index_file}: unreadable cache index ({err})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
            raise CacheError(f"{self.index_file}: not a {FORMAT} index of version {VERSION}")
        self.meta = index
        self.frame_tokens: int = index["frame_tokens"]
        self.max_query_len: int | None = index["max_query_len"]
        self.videos: list[str] = index["videos"]
        self.captions: list[str] = index["captions"]
        self.truncated = frozenset(index["truncated"])  # caption rows cut at max_query_len
        self.frames = self._load(FRAMES, mmap=True)
        self.tokens = self._load(TOKENS, mmap=True)
        self.offsets = self._load(OFFSETS, mmap=False)
        if self.offsets.dtype != np.int64 or (np.diff(self.offsets) < 1).any() or self.offsets[0] != 0:
            raise CacheError(f"{self.path / OFFSETS}: offsets must be increasing int64 from 0")
        self.video_row = {v: i for i, v in enumerate(self.videos)}
        self.caption_row = {c: i for i, c in enumerate(self.captions)}

    def _load(self, name: str, mmap: bool) -> np.ndarray:
        file = self.path / name
        try:
            array = np.load(file, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as err:
            raise CacheError(f"{file}: unreadable cache array ({err})") from None
        expected = tuple(self.meta["arrays"][name])
        if array.shape != expected:
            raise CacheError(f"{file}: shape {array.shape}, but {self.index_file} says {expected}")
        if name != OFFSETS and array.dtype != DTYPE:
            raise CacheError(f"{file}: dtype {array.dtype}, expected {np.dtype(DTYPE).name}")
        return array

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.path)!r}: {len(self.videos)} videos x {self.frame_tokens}, "
                f"{len(self.captions)} captions <= {self.max_query_len} tokens)")

    def video_rows(self, videos: Iterable[str]) -> np.ndarray:
        """(n,) int64 rows of `frames` of these video ids; an id not in the cache is a CacheError."""
        try:
            return np.array([self.video_row[v] for v in videos], dtype=np.int64)
        except KeyError as err:
            raise CacheError(f"{self.index_file}: video {err.args[0]!r} is not in the cache") from None

    def caption_rows(self, captions: Iterable[str]) -> np.ndarray:
        try:
            return np.array([self.caption_row[c] for c in captions], dtype=np.int64)
        except KeyError as err:
            raise CacheError(f"{self.index_file}: caption {err.args[0]!r} is not in the cache") from None

    def query(self, caption: str | int) -> np.ndarray:
        """(L, D) float16 tokens of one caption (an id or a row), a view of the mapped file."""
        row = caption if isinstance(caption, (int, np.integer)) else self.caption_rows([caption])[0]
        return self.tokens[self.offsets[row]:self.offsets[row + 1]]

    def check_settings(self, frame_tokens: int, max_query_len: int | None) -> None:
        """StaleCacheError unless the cache was built with these model settings."""
        for key, want in (("frame_tokens", frame_tokens), ("max_query_len", max_query_len)):
            if self.meta[key] != want:
                raise StaleCacheError(f"{self.index_file}: built with {key}={self.meta[key]}, not {want}; "
                                      f"rebuild the cache")
        if self.meta["resample_code"] != resample_code_hash():
            raise StaleCacheError(f"{self.index_file}: built by other frame resampling code "
                                  f"(prvr.store.resample.resample_frames changed); rebuild the cache")

    def check_caption_file(self, caption_file: str | Path) -> None:
        """StaleCacheError unless `caption_file` has the bytes of one the cache was built from."""
        from prvr.provenance import sha256_file
        if not Path(caption_file).is_file():
            raise CacheError(f"{caption_file}: caption file not found (checking {self.index_file})")
        digest = sha256_file(caption_file)
        if not any(src["sha256"] == digest for src in self.meta["sources"]["captions"]):
            raise StaleCacheError(f"{self.index_file}: built from other caption files than {caption_file} "
                                  f"(not one of {', '.join(s['path'] for s in self.meta['sources']['captions'])});"
                                  f" rebuild the cache")

    def check_inputs(self, caption_files: Iterable[str | Path], video_store: str | Path, text_store: str | Path,
                     frame_tokens: int, max_query_len: int | None) -> None:
        """StaleCacheError (one line naming the index file and what differs) unless the cache was built
        with these settings, from these stores (same bytes) and from caption files including these."""
        self.check_settings(frame_tokens, max_query_len)
        for key, path in (("video_store", video_store), ("text_store", text_store)):
            recorded = self.meta["sources"][key]
            if not Path(path).is_file():
                raise CacheError(f"{path}: {key.replace('_', ' ')} not found (checking {self.index_file})")
            if not _same_file(Path(path), recorded):
                raise StaleCacheError(f"{self.index_file}: built from another {key.replace('_', ' ')} "
                                      f"than {path} (sha256 {recorded['sha256'][:12]}.. of {recorded['path']}); "
                                      f"rebuild the cache")
        for path in caption_files:
            self.check_caption_file(path)


def open_cache(path: str | Path, caption_files: Iterable[str | Path], video_store: str | Path,
               text_store: str | Path, frame_tokens: int, max_query_len: int | None) -> FeatureCache:
    """FeatureCache(path), refused (StaleCacheError) unless built from these inputs and settings."""
    cache = FeatureCache(path)
    cache.check_inputs(caption_files, video_store, text_store, frame_tokens, max_query_len)
    return cache
