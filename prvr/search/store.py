"""The search index on disk: a folder with index.json and HDF5 shards of encoded videos.

    INDEX/index.json        format, the model (path, sha256, config hash), the CLIP weights, the
                            frames settings, the stored keys and dtype, the window settings (null:
                            off), and per video id: file, sha256, duration (s), n_frames (sampled),
                            shard and row; a long video also `windows`, [start, end] seconds each,
                            stored in the rows row, row + 1, ... of its shard
    INDEX/shard_00000.h5    group "<row>" per video or window: one (N, H) dataset per stored encoder
                            output (float16 by default: frame_tokens, clip_tokens, ...) and token_spans
                            (Nf, 2) float64, each frame token's [start, end] seconds of the video

Format prvr-search-index/2 when windows are on (an older prvr refuses it rather than misreading a
long video's rows), /1 when they are off, as before windows existed; both are read. Every file is
written atomically (prvr.io): a new shard first, then index.json naming it, so an interrupted run
leaves the last index.json and its shards intact (a shard written after it is an orphan, removed by
the next write). Shards no video refers to any more (every row re-indexed) are removed. One writer at
a time.

    index = load_index("INDEX")   # LoadedIndex: ids, per row tokens {key: (R, N, H)}, spans, its video
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from prvr.search.fast_scores import inverse_norms

from prvr.errors import PrvrError
from prvr.io import atomic_path, write_json

FORMAT = "prvr-search-index/1"  # no windows (as before they existed)
FORMAT_WINDOWS = "prvr-search-index/2"  # window settings on: long videos may have several rows
MANIFEST = "index.json"
SPANS = "token_spans"
SAME_ENCODER = ("model.sha256", "clip.model", "clip.id", "frames",
                "frame_tokens", "weights", "keys", "dtype", "windows")  # what must match to extend an index


def format_for(windows: dict | None) -> str:
    """The format an index with these window settings is written in."""
    return FORMAT if windows is None else FORMAT_WINDOWS


def read_manifest(folder: Path) -> dict | None:
    """index.json of `folder` (None when the folder has none yet)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrvrError(f"{path}: not a readable index file ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_WINDOWS):
        raise PrvrError(f"{path}: not a prvr search index (format {FORMAT!r} or {FORMAT_WINDOWS!r} expected)")
    return manifest


def _field(manifest: dict, dotted: str):
    for part in dotted.split("."):
        manifest = (manifest or {}).get(part)
    return manifest


def check_same_encoder(folder: Path, manifest: dict, wanted: dict) -> None:
    """A one-line error when `folder` was indexed with another model, CLIP or settings."""
    for key in SAME_ENCODER:
        if _field(manifest, key) != _field(wanted, key):
            raise PrvrError(f"{folder / MANIFEST}: built with another {key} ({_field(manifest, key)!r}, now "
                            f"{_field(wanted, key)!r}); index into a new folder")


def next_shard(folder: Path) -> str:
    """The next free shard file name of `folder`."""
    numbers = [int(p.stem.split("_")[1]) for p in folder.glob("shard_*.h5") if p.stem.split("_")[1].isdigit()]
    return f"shard_{max(numbers, default=-1) + 1:05d}.h5"


def write_shard(path: Path, rows: list[dict], dtype: str) -> None:
    """One shard: group str(row) per item of `rows` ({"tokens": {key: (N, H)}, "spans": (Nf, 2), "id",
    optionally "window": [start, end] seconds, kept as an attribute})."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        for row, item in enumerate(rows):
            group = out.create_group(str(row))
            group.attrs["id"] = item["id"]
            if item.get("window") is not None:
                group.attrs["window"] = np.asarray(item["window"], dtype=np.float64)
            for key, array in item["tokens"].items():
                group[key] = np.asarray(array, dtype=dtype)
            group[SPANS] = np.asarray(item["spans"], dtype=np.float64)


def commit(folder: Path, manifest: dict) -> None:
    """Write index.json, then remove the shards it no longer names."""
    write_json(folder / MANIFEST, manifest)
    used = {entry["shard"] for entry in manifest["videos"].values()}
    for shard in folder.glob("shard_*.h5"):
        if shard.name not in used:
            shard.unlink(missing_ok=True)


@dataclass
class LoadedIndex:
    """An index in memory, videos in id order (V), then their rows (R: one per video, or one per window
    of a long video, in time order): tokens {key: (R, N, H)} in the stored dtype (float16 by default:
    half of float32's memory), their inverse norms {key: (R, N) float32}, spans (R, Nf, 2) seconds of
    the video, row_video (R,) each row's video, row_window (R, 2) its window's [start, end] seconds
    (the whole video for one not windowed), first_row (V + 1,) where each video's rows begin."""
    folder: Path
    manifest: dict
    ids: list[str]
    tokens: dict[str, torch.Tensor]
    spans: np.ndarray
    durations: np.ndarray
    inv_norms: dict[str, torch.Tensor]
    row_video: torch.Tensor
    row_window: np.ndarray
    first_row: np.ndarray

    def file(self, vid: str) -> str:
        return self.manifest["videos"][vid]["file"]

    def folder_fps(self, vid: str) -> float | None:
        """The frame rate of a video indexed from a frame folder; None for a video file."""
        return self.manifest["videos"][vid].get("folder_fps")

    def rows_of(self, video: int) -> np.ndarray:
        """The row numbers of video `video` (its windows in time order)."""
        return np.arange(self.first_row[video], self.first_row[video + 1])

    def windowed(self, video: int) -> bool:
        return "windows" in self.manifest["videos"][self.ids[video]]


def _video_windows(entry: dict) -> list[list[float]]:
    """A video's windows as index.json lists them, or its whole length for one not windowed."""
    return entry.get("windows") or [[0.0, float(entry["duration"])]]


def load_index(folder: str | Path) -> LoadedIndex:
    """Every video of the index at `folder`, read into memory in its stored dtype."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrvrError(f"{folder}: no such index folder (make one with prvr index)")
    manifest = read_manifest(folder)
    if manifest is None:
        raise PrvrError(f"{folder}: no {MANIFEST} (not an index, or its first shard was never finished)")
    videos = manifest["videos"]
    if not videos:
        raise PrvrError(f"{folder / MANIFEST}: the index holds no videos")
    ids = sorted(videos)
    parts = _read_rows(folder, videos, ids, manifest["keys"] + [SPANS])
    windows = [_video_windows(videos[vid]) for vid in ids]
    spans = np.stack(parts.pop(SPANS))  # (R, Nf, 2)
    tokens = {key: torch.from_numpy(np.stack(v)) for key, v in parts.items()}  # (R, N, H), stored dtype
    durations = np.array([videos[v]["duration"] for v in ids], dtype=np.float64)
    inv_norms = {key: inverse_norms(t) for key, t in tokens.items()}  # (R, N) float32, once
    counts = np.array([len(w) for w in windows])  # (V,) rows per video
    row_video = torch.from_numpy(np.repeat(np.arange(len(ids)), counts))  # (R,) int64
    row_window = np.array([span for w in windows for span in w], dtype=np.float64).reshape(-1, 2)  # (R, 2)
    first_row = np.concatenate([[0], np.cumsum(counts)])  # (V + 1,)
    return LoadedIndex(folder, manifest, ids, tokens, spans, durations, inv_norms, row_video, row_window, first_row)


def _read_rows(folder: Path, videos: dict, ids: list[str], keys: list[str]) -> dict[str, list[np.ndarray]]:
    """{key: [array per row]} of every video's rows, videos in `ids` order."""
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    handles: dict[str, h5py.File] = {}
    try:
        for vid in ids:
            entry = videos[vid]
            shard = _shard(folder, entry["shard"], handles)
            for row in range(entry["row"], entry["row"] + len(_video_windows(entry))):
                group = shard[str(row)]
                for key, values in parts.items():
                    values.append(group[key][...])
    except (KeyError, OSError) as err:
        raise PrvrError(f"{folder}: a shard is missing or damaged ({str(err)[:120]}); re-index into a new folder") from None
    finally:
        for handle in handles.values():
            handle.close()
    return parts


def _shard(folder: Path, name: str, handles: dict) -> h5py.File:
    if name not in handles:
        handles[name] = h5py.File(folder / name, "r")
    return handles[name]
