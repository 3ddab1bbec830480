"""Feature extraction: videos -> frame features, captions -> token features, as HDF5 shards.

    enc = load_clip(cfg.clip.model, cfg.clip.pretrained)
    extract_video_features({"v1": Path("v1.mp4")}, enc, cfg.frames, "shards/video_000.h5")
    extract_text_features({"v1#enc#0": "a man ..."}, enc, "text_feats.h5")
    merge_stores(shard_paths, "video_feats.h5")         # prvr.store.feature_store
    export_authors_video_file("video_feats.h5", "activitynet_clip_L14.h5", "activitynet")

Memory: extraction streams. Videos are decoded and encoded one at a time (decode -> encode -> write
the (T, D) features into the open HDF5 shard -> next video); nothing is collected per video, so
peak memory is one video's frames plus the model, whatever the number of videos
(bench/bench_extract_memory.py measures it). Every TRIM_EVERY videos, freed heap is handed back to
the OS (glibc malloc_trim): PyAV's per-video allocations otherwise fragment the heap, and resident
memory crept up by ~15 MiB per 1000 videos. `shards()` cuts the id list into
FramesConfig.shard_size pieces so the DAG can run shards in parallel and resume.

Layout, and the authors' loader (MSC_PRVR src/Datasets/data_provider.py and builder.py, built on
GMMFormer_v2, files `FeatureData/<collection>_clip_L14.h5` and `TextData/<collection>_clip_L14.h5`).
Their loader opens each file with h5py and reads `f[key][...]`, nothing else (no groups, no
attributes), then L2-normalises the last axis and works in float32:
  video file: one root dataset per video, (T, 768) CLIP ViT-L/14 frame embeddings, T = the number
    of sampled frames (any T >= 1: they resample to 128 / 32 tokens themselves). The key is the
    caption file's video id, except for ActivityNet, where the loader reads `video_id[2:]`: the
    authors' ActivityNet video file is keyed without the "v_" prefix ("GGSY1Qvo990"), while its
    caption file and text file use "v_GGSY1Qvo990". Ours keys every video by its caption-file id
    (what prvr.data.dataset reads); export_authors_video_file writes the authors' keys.
  text file: one root dataset per caption id "<video id>#enc#<k>", (L, 768) projected token
    features of positions 0..end-of-text, with NO padding rows: the loader keeps rows[:77], masks
    none of them (mask = 1 for all L rows) and takes row L - 1 as the caption's CLIP embedding
    (MSC's encode_clip_query), so a padded 77-row array would feed padding tokens to the model and
    use a padding row as the sentence embedding. Ours is the same (L = eot + 1 <= 77).
  dtype: the loader casts to float32 whatever is stored (float16 would work too); ours is float32.
Ours adds file attributes (model, fps, ...) and a per-caption `eot_index` attribute, which their
loader never reads.
"""
from __future__ import annotations

import ctypes
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from prvr.config import FramesConfig
from prvr.video.decoding import VideoDecodeError, decode_video, decode_video_chunks
from prvr.store.feature_store import FeatureStore, FeatureStoreError, write_features
from prvr.features.clip import ClipEncoder, encode_frames, encode_text_tokens
from prvr.io import atomic_path


TRIM_EVERY = 50  # videos between two malloc_trim calls
_MALLOC_TRIM = None  # glibc's malloc_trim, False where there is none


def release_free_heap() -> bool:
    """Return freed heap pages to the OS (glibc malloc_trim(0)); False where libc has no malloc_trim."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if not _MALLOC_TRIM:
        return False
    _MALLOC_TRIM(0)
    return True


def shards(ids: list[str], shard_size: int) -> list[list[str]]:
    """Consecutive chunks of `shard_size` ids (the last may be shorter), in the given order."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return [ids[i:i + shard_size] for i in range(0, len(ids), shard_size)]


def video_frame_features(path: str | Path, encoder: ClipEncoder, frames_cfg: FramesConfig,
                         folder_fps: float | None = None, stream_batches: int | None = None) -> np.ndarray:
    """(T, D) float32 CLIP features of one video's sampled frames, at the model's image size.
    folder_fps: `path` is a folder of images shown at this rate (TVR's frames), sampled by time alike.
    stream_batches: decode and encode stream_batches x encoder.batch_size frames at a time, so a long
    video's decoded frames are never held whole; the CLIP batches are the same, so the features are
    equal to the bit to the unstreamed ones."""
    options = dict(fps=frames_cfg.fps, num_frames=frames_cfg.num_frames, size=encoder.image_size,
                   max_frames=frames_cfg.max_frames, backend=frames_cfg.backend, folder_fps=folder_fps)
    if stream_batches is None:
        return encode_frames(encoder, decode_video(path, **options))  # (T, S, S, 3) -> (T, D)
    pieces = decode_video_chunks(path, stream_batches * encoder.batch_size, **options)
    return np.concatenate([encode_frames(encoder, frames) for frames in pieces])  # (T, D)


def extract_video_features(video_paths: dict[str, Path], encoder: ClipEncoder, frames_cfg: FramesConfig,
                           out_path: str | Path, skip_errors: bool = False, folder_fps: float | None = None) -> dict:
    """Write one HDF5 shard: dataset `<video id>` = (T, D) frame features. Returns a summary.

    Streams: each video is decoded, encoded and written before the next is read. A video that
    cannot be decoded raises VideoDecodeError, or with `skip_errors` is left out and listed (with the
    reason) in the file attribute `skipped` (JSON).
    """
    skipped: dict[str, str] = {}
    attrs = {**encoder.describe(), "kind": "video", "fps": frames_cfg.fps,
             "num_frames": json.dumps(frames_cfg.num_frames), "max_frames": frames_cfg.max_frames,
             **({"folder_fps": folder_fps} if folder_fps else {})}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        for index, (video_id, path) in enumerate(tqdm(video_paths.items(), unit="video",
                                                      desc=f"video features {Path(out_path).name}")):
            if index % TRIM_EVERY == TRIM_EVERY - 1:
                release_free_heap()
            try:
                yield video_id, video_frame_features(path, encoder, frames_cfg, folder_fps)
            except VideoDecodeError as err:
                if not skip_errors:
                    raise
                skipped[video_id] = str(err)
        attrs["skipped"] = json.dumps(skipped, sort_keys=True)  # write_features writes attrs last

    written = write_features(out_path, items(), attrs=attrs)
    return {"written": written, "skipped": skipped}


def extract_text_features(captions: dict[str, str], encoder: ClipEncoder, out_path: str | Path) -> int:
    """Write dataset `<caption id>` = (L, D) token features, each with attribute `eot_index` = L - 1."""
    caption_ids = list(captions)
    context = int(encoder.model.context_length)
    attrs = {**encoder.describe(), "kind": "text", "context_length": context}
    cut: list[str] = []  # captions whose tokens fill the whole context: cut there if they were longer

    def items() -> Iterator[tuple[str, np.ndarray]]:
        batch_size = encoder.batch_size
        for start in tqdm(range(0, len(caption_ids), batch_size), desc="text features", unit="batch"):
            batch_ids = caption_ids[start:start + batch_size]
            for caption_id, tokens in zip(batch_ids, encode_text_tokens(encoder, [captions[i] for i in batch_ids])):
                if tokens.shape[0] >= context:
                    cut.append(caption_id)
                yield caption_id, tokens
        attrs["captions_at_context_limit"] = len(cut)  # write_features writes attrs last
        if cut:
            print(f"text features: {len(cut)} of {len(caption_ids)} captions fill CLIP's {context}-token context "
                  f"and are cut there if longer (e.g. {', '.join(cut[:5])})", file=sys.stderr)

    return write_features(out_path, items(), attrs=attrs,
                          item_attrs=lambda _, array: {"eot_index": int(array.shape[0] - 1)})


def authors_video_key(collection: str, video_id: str) -> str:
    """The key under which the authors' loader reads `video_id` from their video feature file:
    ActivityNet drops the first two characters ("v_GGSY1Qvo990" -> "GGSY1Qvo990"), others keep it."""
    if collection != "activitynet":
        return video_id
    if not video_id.startswith("v_") or len(video_id) == 2:
        raise ValueError(f"ActivityNet video id {video_id!r} does not start with 'v_' "
                         f"(the authors' loader strips two characters)")
    return video_id[2:]


def export_authors_video_file(video_store: str | Path, out_path: str | Path, collection: str) -> int:
    """Copy a (merged) video feature file to `out_path` keyed as the authors' loader reads it
    (authors_video_key); arrays and attributes unchanged, file attribute `keys` = "authors-<collection>".
    Returns the number of videos. Only ActivityNet's keys differ."""
    out_path = Path(out_path)
    with FeatureStore(video_store) as store, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        for key, value in store.attrs.items():
            out.attrs[key] = value
        for video_id in store.ids():
            try:
                key = authors_video_key(collection, video_id)
            except ValueError as err:
                raise FeatureStoreError(f"{store.path}: {err}") from None
            if key in out:
                raise FeatureStoreError(f"{store.path}: two videos map to the authors' key {key!r}")
            store._file.copy(store._file[video_id], out, name=key)
        out.attrs["keys"] = f"authors-{collection}"
        return len(out)
