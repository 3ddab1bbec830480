"""PyAV backend: the fallback where decord has no wheel (macOS arm64, Linux aarch64).

Two passes over the file: demuxing (no decoding) gives every frame's presentation timestamp,
from which the caller picks frames; decoding then converts only the picked frames to RGB.
Resizing uses swscale's bilinear filter, the one decord's ffmpeg 4.1 `scale` filter applies by
default: measured on tests/data/videos it keeps the two backends within ~0.4 grey levels
(bicubic: ~0.8-2.2, PIL bicubic after a native-size decode: ~1.1-2.4).

Display rotation (a phone video's display matrix): decord returns frames as FFmpeg shows them, turned
upright, while PyAV hands out the coded picture; so the probe reports the displayed size and each
picked frame is resized as coded and then turned by its own `rotation` (counter-clockwise degrees),
as decord's are (resizing the short side commutes with the quarter turn).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
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
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({_reason(err)})") from None
    if _is_image_format(container):  # decord refuses these too: one rule for both backends
        container.close()
        raise VideoDecodeError(f"{path}: {_image_words(container)}")
    return container


# FFmpeg's demuxers for still and animated images (and image sequences): a file read by one of these
# is a picture whatever its extension, and decord cannot open it ("broken metadata"); both refuse it.
IMAGE_DEMUXERS = ("image2", "gif", "apng")


def _is_image_format(container) -> bool:
    name = container.format.name
    return name.endswith("_pipe") or name in IMAGE_DEMUXERS


def _image_words(container) -> str:
    return f"an image file ({container.format.name}), not a video"


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoDecodeError(f"{path}: {_no_video_words(container)}")
    return container.streams.video[0]


def _no_video_words(container) -> str:
    return "no video stream (audio only)" if container.streams.audio else "no video stream"


def no_video_reason(path: Path) -> str | None:
    """"no video stream (...)" or "an image file (...), not a video" when FFmpeg can open the file
    but it holds no video, else None."""
    try:
        with av.open(str(path)) as container:
            if _is_image_format(container):
                return _image_words(container)
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
    return _quarter_turns(frame.rotation if frame is not None else 0) * 90


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


def _quarter_turns(degrees) -> int:
    """A display rotation (counter-clockwise degrees, None when absent) in quarter turns, 0..3."""
    return int(round((degrees or 0) / 90)) % 4


def _to_rgb(frame, height: int, width: int) -> np.ndarray:
    """The coded picture resized to (height, width) (-1: native size), then turned upright by the
    frame's display rotation."""
    if height < 0:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation=INTERPOLATION).to_ndarray()
    turns = _quarter_turns(getattr(frame, "rotation", 0))
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _frame_key(frame, ordinal: int, pts: list[int] | None):
    """The frame's pts, the ordinal's pts when the decoder lost it, or the ordinal without timestamps."""
    if pts is None:
        return ordinal
    if frame.pts is not None:
        return frame.pts
    return pts[ordinal] if ordinal < len(pts) else None


def _picked_frames(path: Path, pts: list[int] | None, indices: np.ndarray, height: int,
                   width: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """(output positions, RGB frame) of each picked frame as decoding reaches it (presentation order),
    converting only the picked frames (matched by pts)."""
    slots: dict = {}  # key -> output positions (a frame is picked twice when num_frames > N)
    for slot, index in enumerate(indices.tolist()):
        slots.setdefault(pts[index] if pts is not None else index, []).append(slot)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for ordinal, frame in enumerate(container.decode(stream)):
                picked = slots.pop(_frame_key(frame, ordinal, pts), None)
                if picked:
                    yield picked, _to_rgb(frame, height, width)
                if not slots:  # the rest of the file is not needed
                    break
        except (av.FFmpegError, OSError) as err:
            raise VideoDecodeError(f"{path}: corrupt or unreadable video ({_reason(err)})") from None


def _plan(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None):
    with _open(path) as container:
        info, pts = _probe_open(container, path)  # coded size: each frame is turned after its resize
    indices = np.asarray(pick(info), dtype=np.int64)
    height, width = resized_dims(info.height, info.width, size) if size is not None else (-1, -1)
    return info, pts, indices, height, width


def _missing(path: Path, info: VideoProbe, index: int) -> VideoDecodeError:
    return VideoDecodeError(f"{path}: corrupt or unreadable video (no frame decoded at "
                            f"{info.frame_starts[index]:.3f} s)")


def decode(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None) -> np.ndarray:
    """(T, h, w, 3) uint8 RGB of the frames `pick(probe)` chooses, short side resized to `size`."""
    info, pts, indices, height, width = _plan(path, pick, size)
    frames: list[np.ndarray | None] = [None] * len(indices)
    for picked, rgb in _picked_frames(path, pts, indices, height, width):
        for slot in picked:
            frames[slot] = rgb
    missing = [index for index, frame in zip(indices.tolist(), frames) if frame is None]
    if missing:
        raise _missing(path, info, missing[0])
    return np.stack(frames)


def decode_chunks(path: Path, pick: Callable[[VideoProbe], np.ndarray], size: int | None,
                  chunk: int) -> Iterator[np.ndarray]:
    """decode's frames as consecutive (<= chunk, h, w, 3) arrays, in one pass over the file: a chunk is
    handed out as soon as its frames are decoded, so only a chunk (and frames ahead of it) is held."""
    info, pts, indices, height, width = _plan(path, pick, size)
    ready: dict[int, np.ndarray] = {}
    done = 0  # output positions handed out
    for picked, rgb in _picked_frames(path, pts, indices, height, width):
        ready.update((slot, rgb) for slot in picked)
        while done < len(indices):
            stop = min(done + chunk, len(indices))
            if len(ready) < stop - done or any(s not in ready for s in range(done, stop)):
                break  # (ready holds positions >= done only: the count rules most frames out cheaply)
            yield np.stack([ready.pop(s) for s in range(done, stop)])
            done = stop
    if done < len(indices):
        raise _missing(path, info, int(indices[min(s for s in range(done, len(indices)) if s not in ready)]))
