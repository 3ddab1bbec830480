"""Video decoding for CLIP features: frames sampled uniformly in time, short-side resize, centre crop.

Used by feature extraction (prvr.features.extract), one video at a time so that full-size frames of
a whole corpus never sit in memory or on disk:

    frames = decode_video("v.mp4", fps=2.0, size=224, max_frames=256)   # (T, 224, 224, 3) uint8
    frames = decode_video("tvr/vid", fps=2.0, size=224, folder_fps=3)   # a folder of 3 fps JPEGs

Sampling (prvr.video.frame_sampling): n targets at the centres of n equal bins of the video's
duration, each read from the frame on screen at that time, so variable-frame-rate files are
sampled evenly in time (constant-frame-rate files get the centre frame of n equal index bins).

Backends: `backend="decord"` (random access; its ffmpeg scaler resizes while decoding),
`"pyav"` (where decord has no wheel: macOS arm64, Linux aarch64; same sampling, swscale bilinear
like decord, pixels within ~0.4 grey levels of decord's on average) or `"auto"` (decord when
importable, else PyAV). A directory is decoded as a frame folder only when `folder_fps` is given
(image k presented at k / folder_fps; see prvr.video.decoders.frame_folder).

`size` reproduces CLIP's inference preprocessing: resize the short side to `size`, keep the aspect
ratio, centre-crop `size` x `size`. Any problem with a file (missing, a directory, audio only,
unreadable, corrupt, no frames) is a one-line `VideoDecodeError` naming it. FFmpeg's C-level
warnings go to fd 2; wrap decoding in `prvr.video.native_log.redirect_native_stderr` to log them.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from prvr.video.decoders import frame_folder
from prvr.video.decoders.common import VideoDecodeError, VideoProbe, centre_crop, resized_dims
from prvr.video.frame_sampling import (indices_at_times, presentation_duration, sample_indices,
                                      sample_times, select_frames)
from prvr.errors import PrvrError

__all__ = ["BACKENDS", "FramePlan", "VideoDecodeError", "decode_at_times", "decode_frames", "decode_video",
           "decode_video_chunks",
           "duration_seconds", "indices_at_times", "plan_frames", "resolve_backend", "sample_indices",
           "sample_times", "video_info"]

BACKENDS = ("auto", "decord", "pyav")
_resized_dims = resized_dims  # the name bench/bench_decode_clip.py imports
_centre_crop = centre_crop


class FramePlan(NamedTuple):
    """Which frames a decode call reads: frame indices, target times and the frames' own start times (s)."""

    indices: np.ndarray
    target_times: np.ndarray
    frame_times: np.ndarray


def _backend_module(name: str):
    try:
        return importlib.import_module(f"prvr.video.decoders.{name}_backend")
    except (ImportError, OSError) as err:  # OSError: a wheel whose shared libraries do not load
        raise PrvrError(f"video backend {name!r} is not usable here ({err}); "
                        f"install it or use backend='pyav'") from None


def resolve_backend(backend: str = "auto") -> str:
    """"decord" or "pyav": the named one, or for "auto" decord when it imports, else PyAV."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    try:
        _backend_module("decord")
        return "decord"
    except PrvrError:
        return "pyav"


def _is_frame_folder(path: Path, folder_fps: float | None) -> bool:
    return folder_fps is not None and path.is_dir()


def _probe(path: Path, backend: str, folder_fps: float | None) -> VideoProbe:
    if _is_frame_folder(path, folder_fps):
        return frame_folder.probe(path, folder_fps)[0]
    return _backend_module(resolve_backend(backend)).probe(path)


def _picker(fps, num_frames, max_frames):
    """probe -> frame indices, the same rule for every backend."""
    return lambda info: select_frames(info.frame_starts, fps, num_frames, max_frames, info.fps)[0]


def _finish(frames: np.ndarray, path: Path, size: int | None) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoDecodeError(f"{path}: decoder returned frames of shape {frames.shape}")
    if size is not None:
        frames = centre_crop(frames, size)
    return np.ascontiguousarray(frames, dtype=np.uint8)


def decode_video(path: str | Path, fps: float | None = None, num_frames: int | None = None,
                 size: int | None = None, max_frames: int | None = None, *, backend: str = "auto",
                 folder_fps: float | None = None) -> np.ndarray:
    """Decode frames sampled uniformly in time from one video as (T, H, W, 3) uint8 RGB.

    fps: frames per second of video to sample (round(duration * fps), at most one per frame);
    num_frames: exactly this many (frames repeat in short videos); neither: every frame;
    max_frames caps the count. size: short side resized to `size`, then centre crop to
    size x size; None keeps the native resolution. folder_fps: decode `path` as a frame folder
    (see `decode_frames`) when it is a directory; files are decoded as videos regardless.
    """
    path = Path(path)
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if _is_frame_folder(path, folder_fps):
        return decode_frames(path, folder_fps, fps=fps, num_frames=num_frames, size=size,
                             max_frames=max_frames)
    module = _backend_module(resolve_backend(backend))
    return _finish(module.decode(path, _picker(fps, num_frames, max_frames), size), path, size)


def decode_video_chunks(path: str | Path, chunk: int, fps: float | None = None, num_frames: int | None = None,
                        size: int | None = None, max_frames: int | None = None, *, backend: str = "auto",
                        folder_fps: float | None = None) -> Iterator[np.ndarray]:
    """decode_video's frames, the same arrays, as consecutive (<= chunk, H, W, 3) pieces decoded one at
    a time (one pass over the file), so a long video is never held whole: e.g. CLIP-encode each piece
    and drop it."""
    path = Path(path)
    if chunk < 1 or (size is not None and size <= 0):
        raise ValueError(f"chunk and size must be positive, got {chunk}, {size}")
    pick = _picker(fps, num_frames, max_frames)
    if _is_frame_folder(path, folder_fps):
        pieces = frame_folder.decode_chunks(path, folder_fps, pick, size, chunk)
    else:
        pieces = _backend_module(resolve_backend(backend)).decode_chunks(path, pick, size, chunk)
    for frames in pieces:
        yield _finish(frames, path, size)


def decode_at_times(path: str | Path, times, size: int | None = None, *, backend: str = "auto",
                    folder_fps: float | None = None) -> np.ndarray:
    """(len(times), H, W, 3) uint8 RGB: the frame on screen at each time (seconds from the first frame,
    indices_at_times), resized and cropped as `decode_video` does; e.g. thumbnails of a part of a long
    video. folder_fps: `path` is a frame folder when it is a directory (as decode_video)."""
    path = Path(path)
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if _is_frame_folder(path, folder_fps):
        frames = frame_folder.decode(path, folder_fps, lambda info: indices_at_times(info.frame_starts, times), size)
        return _finish(frames, path, size)
    module = _backend_module(resolve_backend(backend))
    return _finish(module.decode(path, lambda info: indices_at_times(info.frame_starts, times), size), path, size)


def decode_frames(folder: str | Path, folder_fps: float, fps: float | None = None,
                  num_frames: int | None = None, size: int | None = None,
                  max_frames: int | None = None) -> np.ndarray:
    """Decode a folder of frame images (image k shown at k / folder_fps) like a video.

    Images (.jpg .jpeg .png) in natural file-name order; sampling as `decode_video`; resize is
    PIL bicubic (CLIP's own filter) and centre crop.
    """
    folder = Path(folder)
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    frames = frame_folder.decode(folder, folder_fps, _picker(fps, num_frames, max_frames), size)
    return _finish(frames, folder, size)


def plan_frames(path: str | Path, fps: float | None = None, num_frames: int | None = None,
                max_frames: int | None = None, *, backend: str = "auto",
                folder_fps: float | None = None) -> FramePlan:
    """The frames `decode_video` with these arguments reads, without decoding them."""
    info = _probe(Path(path), backend, folder_fps)
    indices, times = select_frames(info.frame_starts, fps, num_frames, max_frames, info.fps)
    return FramePlan(indices, times, info.frame_starts[indices])


def video_info(path: str | Path, *, backend: str = "auto", folder_fps: float | None = None) -> dict:
    """n_frames, nominal fps, native height and width, and duration (s, first frame to end of last)."""
    path = Path(path)
    info = _probe(path, backend, folder_fps)
    return {"n_frames": info.n_frames, "fps": info.fps, "height": info.height, "width": info.width,
            "duration": presentation_duration(info.frame_starts, info.fps)}


def duration_seconds(path: str | Path, *, backend: str = "auto", folder_fps: float | None = None) -> float:
    """Length of a video in seconds, from its first frame's start to the end of its last frame."""
    return video_info(path, backend=backend, folder_fps=folder_fps)["duration"]
