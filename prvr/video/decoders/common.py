"""What the decoding backends share: the error type, the probe record, path checks, resize geometry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr.errors import PrvrError


class VideoDecodeError(PrvrError, RuntimeError):
    """A video could not be decoded; the message names the file and the problem in one line."""


@dataclass(frozen=True)
class VideoProbe:
    """What sampling needs to know about a video before decoding any of it."""

    frame_starts: np.ndarray  # (N,) float64 seconds, presentation order, first frame at 0
    fps: float  # nominal (average) frame rate, nan when unknown
    height: int
    width: int

    @property
    def n_frames(self) -> int:
        return len(self.frame_starts)


def check_video_file(path: Path) -> None:
    """Fail early, in words, on the two mistakes decoders report as cryptic open errors."""
    if path.is_dir():
        raise VideoDecodeError(f"{path}: is a directory, not a video file")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")


def one_line(err: BaseException) -> str:
    """The most specific part of an error's last line (decord's are multi-line C++ logs)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    # "[12:00:00] /src/x.cc:218: Check failed: ... Thread worker: Error sending packet." -> tail
    return last.rsplit(": ", 1)[-1] if "Check failed" in last else last.split("] ")[-1]


def resized_dims(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side equal to `size` and the aspect ratio kept (as CLIP's Resize)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Crop (T, H, W, 3) to (T, size, size, 3) around the centre (torchvision's rounding)."""
    height, width = frames.shape[1:3]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return frames[:, top:top + size, left:left + size]
