"""decord backend: random access with ffmpeg's scaler resizing while decoding (the fast path).

decord ships wheels only for Linux x86_64 and Windows AMD64; elsewhere `prvr.video.decoding`
falls back to PyAV. decord's timestamps (`get_frame_timestamp`) are presentation times relative
to the stream's start, correct for variable-frame-rate mp4, mov and mkv; its end times are not
(a constant step), so only the starts are used.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import decord
import numpy as np

from prvr.video.decoders.common import VideoDecodeError, VideoProbe, check_video_file, one_line, resized_dims

# FFmpeg's warnings (e.g. "[mov,mp4 @ 0x..] stream 1, offset ...: partial file") are printed by C
# code straight to fd 2; keep errors only (prvr.video.native_log sends those to a log file).
decord.logging.set_level(decord.logging.ERROR)


def _open(path: Path, width: int = -1, height: int = -1):
    """A decord VideoReader on the CPU, errors turned into one-line VideoDecodeErrors."""
    check_video_file(path)
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
    except (decord.DECORDError, RuntimeError) as err:
        reason = _no_video_reason(path)  # decord: "cannot find video stream" or "broken metadata"
        raise VideoDecodeError(f"{path}: {reason or f'cannot open video ({one_line(err)})'}") from None


def _no_video_reason(path: Path) -> str | None:
    try:
        from prvr.video.decoders.pyav_backend import no_video_reason
    except ImportError:
        return None
    return no_video_reason(path)


def probe(path: Path) -> VideoProbe:
    """Frame start times, nominal fps and native size (decodes the first frame to be sure it can)."""
    reader = _open(path)
    n_frames = len(reader)
    if n_frames == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    try:
        starts = reader.get_frame_timestamp(range(n_frames))[:, 0].astype(np.float64)
        height, width = reader[0].shape[:2]
    except Exception as err:  # decord raises DECORDError or RuntimeError depending on where it fails
        raise VideoDecodeError(f"{path}: cannot decode first frame ({one_line(err)})") from None
    return VideoProbe(starts - starts[0], float(reader.get_avg_fps()), int(height), int(width))


def decode(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None) -> np.ndarray:
    """(T, h, w, 3) uint8 RGB of the frames `pick(probe)` chooses, short side resized to `size`."""
    return next(decode_chunks(path, pick, size, chunk=None))


def decode_chunks(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None,
                  chunk: int | None) -> Iterator[np.ndarray]:
    """decode's frames as consecutive (<= chunk, h, w, 3) arrays read by one reader (chunk None: all in
    one), so only a chunk is held at a time."""
    info = probe(path)
    indices = np.asarray(pick(info), dtype=np.int64)
    height, width = resized_dims(info.height, info.width, size) if size is not None else (-1, -1)
    reader = _open(path, width=width, height=height)
    step = chunk or max(1, len(indices))
    try:
        for start in range(0, max(1, len(indices)), step):
            part = indices[start:start + step]
            try:
                frames = reader.get_batch(part.tolist()).asnumpy()  # (t, h, w, 3)
            except Exception as err:  # corrupt streams fail here, inside decord's threaded decoder
                raise VideoDecodeError(f"{path}: corrupt or unreadable video ({one_line(err)})") from None
            if frames.ndim != 4 or frames.shape[0] != len(part):
                raise VideoDecodeError(f"{path}: decoder returned frames of shape {frames.shape}")
            yield frames
    finally:
        del reader  # its decoder threads may still log: end them while stderr is redirected
