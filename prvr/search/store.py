"""The search index on disk: a folder with index.json and HDF5 shards of encoded videos.

    INDEX/index.json        format, the model (path, sha256, config hash), the CLIP weights, the
                            frames settings, the stored keys and dtype, and per video id: file,
                            sha256, duration (s), n_frames (sampled), shard and row
    INDEX/shard_00000.h5    group "<row>" per video: one (N, H) dataset per stored encoder output
                            (float16 by default: frame_tokens, clip_tokens, ...) and token_spans
                            (Nf, 2) float64, each frame token's [start, end] seconds

Every file is written atomically (prvr.io): a new shard first, then index.json naming it, so an
interrupted run leaves the last index.json and its shards intact (a shard written after it is an
orphan, removed by the next write). Shards no video refers to any more (every row re-indexed) are
removed. One writer at a time.

    index = load_index("INDEX")   # LoadedIndex: ids, tokens {key: (V, N, H) float32}, spans, durations
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

FORMAT = "prvr-search-index/1"
MANIFEST = "index.json"
SPANS = "token_spans"
SAME_ENCODER = ("model.sha256", "clip.model", "clip.id", "frames",
                "frame_tokens", "weights", "keys", "dtype")  # what must match to extend an index


def read_manifest(folder: Path) -> dict | None:
    """index.json of `folder` (None when the folder has none yet)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrvrError(f"{path}: not a readable index file ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PrvrError(f"{path}: not a prvr search index (format {FORMAT!r} expected)")
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
    """One shard: group str(row) per item of `rows` ({"tokens": {key: (N, H)}, "spans": (Nf, 2), "id"})."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        for row, item in enumerate(rows):
            group = out.create_group(str(row))
            group.attrs["id"] = item["id"]
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
    """An index in memory, videos in id order: tokens {key: (V, N, H)} in the stored dtype (float16 by
    default: half of float32's memory), their inverse norms {key: (V, N) float32}, spans (V, Nf, 2)."""
    folder: Path
    manifest: dict
    ids: list[str]
    tokens: dict[str, torch.Tensor]
    spans: np.ndarray
    durations: np.ndarray
    inv_norms: dict[str, torch.Tensor]

    def file(self, vid: str) -> str:
        return self.manifest["videos"][vid]["file"]


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
    parts: dict[str, list[np.ndarray]] = {key: [] for key in manifest["keys"] + [SPANS]}
    handles: dict[str, h5py.File] = {}
    try:
        for vid in ids:
            entry = videos[vid]
            group = _shard(folder, entry["shard"], handles)[str(entry["row"])]
            for key, values in parts.items():
                values.append(group[key][...])
    except (KeyError, OSError) as err:
        raise PrvrError(f"{folder}: a shard is missing or damaged ({str(err)[:120]}); re-index into a new folder") from None
    finally:
        for handle in handles.values():
            handle.close()
    spans = np.stack(parts.pop(SPANS))  # (V, Nf, 2)
    tokens = {key: torch.from_numpy(np.stack(v)) for key, v in parts.items()}  # (V, N, H), stored dtype
    durations = np.array([videos[v]["duration"] for v in ids], dtype=np.float64)
    inv_norms = {key: inverse_norms(t) for key, t in tokens.items()}  # (V, N) float32, once
    return LoadedIndex(folder, manifest, ids, tokens, spans, durations, inv_norms)


def _shard(folder: Path, name: str, handles: dict) -> h5py.File:
    if name not in handles:
        handles[name] = h5py.File(folder / name, "r")
    return handles[name]
