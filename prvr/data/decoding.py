"""Video decoding with decord: uniform frame sampling, short-side resize and centre crop.

Used by feature extraction (prvr.features.extract), one video at a time so that full-size frames of
a whole corpus never sit in memory or on disk:

    frames = decode_video("v.mp4", fps=2.0, size=224, max_frames=256)   # (T, 224, 224, 3) uint8

`size` reproduces CLIP's inference preprocessing (resize the short side to `size`, keep the
aspect ratio, centre-crop `size` x `size`); the resize itself is done by decord (ffmpeg's
scaler) while decoding, which is much cheaper than decoding at full size and resizing after.
Any problem with a file (missing, unreadable, corrupt, no frames) is a one-line `VideoDecodeError`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from prvr.errors import PrvrError


class VideoDecodeError(PrvrError, RuntimeError):
    """A video could not be decoded; the message names the file and the problem in one line."""


def sample_indices(n_total: int, native_fps: float, fps: float | None = None,
                   num_frames: int | None = None, max_frames: int | None = None) -> np.ndarray:
    """Indices of uniformly sampled frames: the centre frame of each of n equal bins.

    n is `num_frames` when given (repeating frames if the video has fewer), otherwise
    round(duration * fps) capped at `n_total` (never more frames than the video has), otherwise
    every frame. `max_frames` caps n in all cases; at least one frame is always returned.
    """
    if n_total <= 0:
        raise ValueError(f"cannot sample from a video with {n_total} frames")
    if num_frames is not None:
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        n = num_frames
    elif fps is not None:
        if fps <= 0 or native_fps <= 0:
            raise ValueError(f"fps and native_fps must be positive, got {fps} and {native_fps}")
        n = min(n_total, round(n_total / native_fps * fps))
    else:
        n = n_total
    if max_frames is not None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        n = min(n, max_frames)
    n = max(1, n)
    bin_centres = (np.arange(n) + 0.5) * (n_total / n)  # (n,) in frame units
    return np.minimum(np.floor(bin_centres).astype(np.int64), n_total - 1)


def _short_line(err: BaseException) -> str:
    """decord's errors are multi-line C++ logs; keep the most specific part of the last line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    # "[12:00:00] /src/x.cc:218: Check failed: ... Thread worker: Error sending packet." -> tail
    return last.rsplit(": ", 1)[-1] if "Check failed" in last else last.split("] ")[-1]


def _open_reader(path: Path, width: int = -1, height: int = -1):
    """A decord VideoReader on the CPU, errors turned into VideoDecodeError."""
    import decord

    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({_short_line(err)})") from None


def _resized_dims(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side equal to `size` and the aspect ratio kept (as CLIP's Resize)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def _centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Crop (T, H, W, 3) to (T, size, size, 3) around the centre (torchvision's rounding)."""
    height, width = frames.shape[1:3]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return frames[:, top:top + size, left:left + size]


def video_info(path: str | Path) -> dict:
    """Frame count, average fps and native (height, width) of a video, without decoding it all."""
    path = Path(path)
    reader = _open_reader(path)
    n_total = len(reader)
    if n_total == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    try:
        height, width = reader[0].shape[:2]
    except Exception as err:  # decord raises DECORDError or RuntimeError depending on where it fails
        raise VideoDecodeError(f"{path}: cannot decode first frame ({_short_line(err)})") from None
    return {"n_frames": n_total, "fps": float(reader.get_avg_fps()), "height": height, "width": width}


def decode_video(path: str | Path, fps: float | None = None, num_frames: int | None = None,
                 size: int | None = None, max_frames: int | None = None) -> np.ndarray:
    """Decode uniformly sampled frames of one video as (T, H, W, 3) uint8 RGB.

    fps / num_frames / max_frames: see `sample_indices`. size: short side resized to `size`
    then centre crop to size x size; None keeps the native resolution.
    """
    path = Path(path)
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    info = video_info(path)
    height, width = -1, -1
    if size is not None:
        height, width = _resized_dims(info["height"], info["width"], size)
    if fps is not None and num_frames is None and not info["fps"] > 0:
        raise VideoDecodeError(f"{path}: unknown frame rate, cannot sample at {fps} fps")
    reader = _open_reader(path, width=width, height=height)
    indices = sample_indices(info["n_frames"], info["fps"], fps, num_frames, max_frames)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()  # (T, h, w, 3)
    except Exception as err:  # corrupt streams fail here, inside decord's threaded decoder
        raise VideoDecodeError(f"{path}: corrupt or unreadable video ({_short_line(err)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(indices):
        raise VideoDecodeError(f"{path}: decoder returned frames of shape {frames.shape}")
    if size is not None:
        frames = _centre_crop(frames, size)
    return np.ascontiguousarray(frames, dtype=np.uint8)


def duration_seconds(path: str | Path) -> float:
    """Length of a video in seconds (frame count / average fps)."""
    info = video_info(path)
    return info["n_frames"] / info["fps"] if info["fps"] > 0 else math.nan
