"""Feature extraction: videos -> frame features, captions -> token features, as HDF5 shards.

    enc = load_clip(cfg.clip.model, cfg.clip.pretrained)
    extract_video_features({"v1": Path("v1.mp4")}, enc, cfg.frames, "shards/video_000.h5")
    extract_text_features({"v1#enc#0": "a man ..."}, enc, "text_feats.h5")
    merge_stores(shard_paths, "video_feats.h5")         # prvr.data.feature_store

Videos are decoded and encoded one at a time (decode -> encode -> keep only the (T, D) features),
so a 20k-video corpus never holds full-size frames of more than one video. `shards()` cuts the id
list into FramesConfig.shard_size pieces so the DAG can run shards in parallel and resume.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prvr.config import FramesConfig
from prvr.data.decoding import VideoDecodeError, decode_video
from prvr.data.feature_store import write_features
from prvr.features.clip import ClipEncoder, encode_frames, encode_text_tokens


def shards(ids: list[str], shard_size: int) -> list[list[str]]:
    """Consecutive chunks of `shard_size` ids (the last may be shorter), in the given order."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return [ids[i:i + shard_size] for i in range(0, len(ids), shard_size)]


def video_frame_features(path: str | Path, encoder: ClipEncoder, frames_cfg: FramesConfig) -> np.ndarray:
    """(T, D) float32 CLIP features of one video's sampled frames, at the model's image size."""
    frames = decode_video(path, fps=frames_cfg.fps, num_frames=frames_cfg.num_frames,
                          size=encoder.image_size, max_frames=frames_cfg.max_frames,
                          backend=frames_cfg.backend)  # (T, S, S, 3)
    return encode_frames(encoder, frames)


def extract_video_features(video_paths: dict[str, Path], encoder: ClipEncoder, frames_cfg: FramesConfig,
                           out_path: str | Path, skip_errors: bool = False) -> dict:
    """Write one HDF5 shard: dataset `<video id>` = (T, D) frame features. Returns a summary.

    A video that cannot be decoded raises VideoDecodeError, or with `skip_errors` is left out and
    listed (with the reason) in the file attribute `skipped` (JSON).
    """
    skipped: dict[str, str] = {}
    attrs = {**encoder.describe(), "kind": "video", "fps": frames_cfg.fps,
             "num_frames": json.dumps(frames_cfg.num_frames), "max_frames": frames_cfg.max_frames}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        for video_id, path in tqdm(video_paths.items(), desc=f"video features {Path(out_path).name}",
                                   unit="video"):
            try:
                yield video_id, video_frame_features(path, encoder, frames_cfg)
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
    attrs = {**encoder.describe(), "kind": "text", "context_length": int(encoder.model.context_length)}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        batch_size = encoder.batch_size
        for start in tqdm(range(0, len(caption_ids), batch_size), desc="text features", unit="batch"):
            batch_ids = caption_ids[start:start + batch_size]
            yield from zip(batch_ids, encode_text_tokens(encoder, [captions[i] for i in batch_ids]))

    return write_features(out_path, items(), attrs=attrs,
                          item_attrs=lambda _, array: {"eot_index": int(array.shape[0] - 1)})
