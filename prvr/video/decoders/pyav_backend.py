"""PyAV backend: the fallback where decord has no wheel (macOS arm64, Linux aarch64).

Two passes over the file: demuxing (no decoding) gives every frame's presentation timestamp,
from which the caller picks frames; decoding then converts only the picked frames to RGB.
Resizing uses swscale's bilinear filter, the one decord's ffmpeg 4.1 `scale` filter applies by
default: measured on tests/data/videos it keeps the two backends within ~0.4 grey levels
(bicubic: ~0.8-2.2, PIL bicubic after a native-size decode: ~1.1-2.4).

Display rotation (a phone video's display matrix): decord returns frames as FFmpeg shows them, turned
upright, while PyAV hands out the coded picture; so the probe reports the displayed size and each
picked frame is turned by its `rotation` (counter-clockwise degrees), as decord's are.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from prvr.video.decoders.common import VideoDecodeError, VideoProbe, check_video_file, one_line, resized_dims

INTERPOLATION = "BILINEAR"


def _reason(err: BaseException) -> str:
    """FFmpeg's own words without the errno and the quoted file name PyAV appends."""
    return getattr(err, "strerror", None) or one_line(err)


def _open(path: Path):
    check_video_file(path)
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({_reason(err)})") from None


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoDecodeError(f"{path}: {_no_video_words(container)}")
    return container.streams.video[0]


def _no_video_words(container) -> str:
    return "no video stream (audio only)" if container.streams.audio else "no video stream"


def no_video_reason(path: Path) -> str | None:
    """"no video stream (...)" when FFmpeg can open the file but it has no video, else None."""
    try:
        with av.open(str(path)) as container:
            return None if container.streams.video else _no_video_words(container)
    except (av.FFmpegError, OSError, ValueError):
        return None


def _presentation_pts(container, stream, path: Path) -> tuple[list[int] | None, int]:
    """(sorted pts of every frame, or None when the stream has no timestamps; frame count)."""
    try:  # packets, not frames: demuxing reads the file but decodes nothing
        stamps = [packet.pts for packet in container.demux(stream) if packet.size and not packet.is_discard]
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(f"{path}: cannot read video ({_reason(err)})") from None
    if any(pts is None for pts in stamps):
        return None, len(stamps)
    return sorted(stamps), len(stamps)


def display_rotation(path: Path) -> int:
    """The counter-clockwise display rotation of the file's first frame, rounded to 0, 90, 180 or
    270 (0 where nothing decodes: the decoding pass then says what is wrong)."""
    with _open(path) as container:
        try:
            frame = next(container.decode(_video_stream(container, path)), None)
        except (av.FFmpegError, OSError):
            return 0
    return int(round((frame.rotation if frame is not None else 0) / 90)) % 4 * 90


def _probe_open(container, path: Path, rotation: int = 0) -> tuple[VideoProbe, list[int] | None]:
    """The probe of the displayed picture: height and width swap under a 90 or 270 degree rotation."""
    stream = _video_stream(container, path)
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else float("nan")
    pts, n_frames = _presentation_pts(container, stream, path)
    if n_frames == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    if pts is not None and stream.time_base:
        starts = (np.asarray(pts, dtype=np.float64) - pts[0]) * float(stream.time_base)
    elif fps > 0:  # raw elementary streams carry no timestamps: assume the nominal rate
        starts = np.arange(n_frames) / fps
    else:
        raise VideoDecodeError(f"{path}: frames have no timestamps and the frame rate is unknown")
    height, width = stream.codec_context.height, stream.codec_context.width
    if not (height > 0 and width > 0):
        raise VideoDecodeError(f"{path}: unknown frame size {width}x{height}")
    if rotation in (90, 270):
        height, width = width, height
    return VideoProbe(starts, fps, height, width), pts


def probe(path: Path) -> VideoProbe:
    """Frame start times, nominal fps and native size, from the container without decoding."""
    rotation = display_rotation(path)
    with _open(path) as container:
        return _probe_open(container, path, rotation)[0]


def _to_rgb(frame, height: int, width: int, rotation: int = 0) -> np.ndarray:
    """(height, width, 3) of the displayed picture (-1: native size), turned by `rotation` degrees."""
    turns = rotation // 90
    if turns % 2:  # the coded picture is the displayed one on its side: resize it with the sides swapped
        height, width = width, height
    if height < 0:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation=INTERPOLATION).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _frame_key(frame, ordinal: int, pts: list[int] | None):
    """The frame's pts, the ordinal's pts when the decoder lost it, or the ordinal without timestamps."""
    if pts is None:
        return ordinal
    if frame.pts is not None:
        return frame.pts
    return pts[ordinal] if ordinal < len(pts) else None


def _decode_picked(path: Path, pts: list[int] | None, indices: np.ndarray, height: int,
                   width: int, rotation: int = 0) -> list[np.ndarray | None]:
    """Decode in presentation order, converting only the picked frames (matched by pts)."""
    slots: dict = {}  # key -> output positions (a frame is picked twice when num_frames > N)
    for slot, index in enumerate(indices.tolist()):
        slots.setdefault(pts[index] if pts is not None else index, []).append(slot)
    out: list[np.ndarray | None] = [None] * len(indices)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for ordinal, frame in enumerate(container.decode(stream)):
                picked = slots.pop(_frame_key(frame, ordinal, pts), None)
                if picked:
                    rgb = _to_rgb(frame, height, width, rotation)
                    for slot in picked:
                        out[slot] = rgb
                if not slots:  # the rest of the file is not needed
                    break
        except (av.FFmpegError, OSError) as err:
            raise VideoDecodeError(f"{path}: corrupt or unreadable video ({_reason(err)})") from None
    return out


def decode(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None) -> np.ndarray:
    """(T, h, w, 3) uint8 RGB of the frames `pick(probe)` chooses, short side resized to `size`."""
    rotation = display_rotation(path)
    with _open(path) as container:
        info, pts = _probe_open(container, path, rotation)
    indices = np.asarray(pick(info), dtype=np.int64)
    height, width = resized_dims(info.height, info.width, size) if size is not None else (-1, -1)
    frames = _decode_picked(path, pts, indices, height, width, rotation)
    missing = [index for index, frame in zip(indices.tolist(), frames) if frame is None]
    if missing:
        raise VideoDecodeError(f"{path}: corrupt or unreadable video (no frame decoded at "
                               f"{info.frame_starts[missing[0]]:.3f} s)")
    return np.stack(frames)
