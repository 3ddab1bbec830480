"""Frame folders: a video published as numbered images (TVR: 3 fps JPEGs, vid/00001.jpg ...).

Image k in natural file-name order (00002 before 00010, frame_2 before frame_10) is presented at
k / folder_fps. Only the picked images are read. Resizing is PIL's bicubic, the filter of CLIP's
own preprocessing (the video backends use swscale bilinear while decoding; the two differ by
~1-2 grey levels on average, see tests/test_decoding_backends.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from prvr.video.decoders.common import VideoDecodeError, VideoProbe, centre_crop, resized_dims

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _natural_key(name: str) -> tuple:
    """"frame_10.jpg" -> ("frame_", 10, ".jpg"): digit runs compare as numbers (str, int alternate)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def list_images(folder: Path) -> list[Path]:
    """The folder's image files in natural order; hidden files (._x.jpg from macOS) are skipped."""
    if not folder.is_dir():
        what = "is a file, not a frame folder" if folder.exists() else "frame folder not found"
        raise VideoDecodeError(f"{folder}: {what}")
    images = [entry for entry in folder.iterdir() if entry.suffix.lower() in IMAGE_SUFFIXES
              and not entry.name.startswith(".") and entry.is_file()]
    if not images:
        raise VideoDecodeError(f"{folder}: frame folder has no images ({' '.join(IMAGE_SUFFIXES)})")
    return sorted(images, key=lambda entry: _natural_key(entry.name))


def _read_rgb(image_path: Path) -> Image.Image:
    try:
        with Image.open(image_path) as image:
            return image.convert("RGB")  # convert() loads the pixels, so truncated files fail here
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{image_path}: unreadable image ({_pil_reason(err)})") from None


def _pil_reason(err: BaseException) -> str:
    """PIL's message without the file name it sometimes repeats."""
    return str(err).replace("\n", " ").split(" '")[0] or type(err).__name__


def probe(folder: Path, folder_fps: float) -> tuple[VideoProbe, list[Path]]:
    """Start times k / folder_fps and the size of the first image (only its header is read)."""
    if not folder_fps > 0:
        raise ValueError(f"folder_fps must be positive, got {folder_fps}")
    images = list_images(folder)
    try:
        with Image.open(images[0]) as first:
            width, height = first.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{images[0]}: unreadable image ({_pil_reason(err)})") from None
    starts = np.arange(len(images), dtype=np.float64) / folder_fps
    return VideoProbe(starts, float(folder_fps), height, width), images


def _resize_crop(image: Image.Image, size: int | None) -> np.ndarray:
    """Short side to `size`, centre crop (per image: a folder may mix sizes); None: as stored."""
    if size is None:
        return np.asarray(image, dtype=np.uint8)
    height, width = resized_dims(image.height, image.width, size)
    resized = np.asarray(image.resize((width, height), Image.BICUBIC), dtype=np.uint8)
    return centre_crop(resized[None], size)[0]


def decode(folder: Path, folder_fps: float, pick: Callable[[VideoProbe], np.ndarray],
           size: int | None) -> np.ndarray:
    """(T, h, w, 3) uint8 RGB of the images `pick(probe)` chooses, short side resized to `size`."""
    info, images = probe(folder, folder_fps)
    return _read_picked(images, np.asarray(pick(info), dtype=np.int64), size)


def decode_chunks(folder: Path, folder_fps: float, pick: Callable[[VideoProbe], np.ndarray],
                  size: int | None, chunk: int) -> Iterator[np.ndarray]:
    """decode's frames as consecutive (<= chunk, h, w, 3) arrays, a chunk's images read at a time."""
    info, images = probe(folder, folder_fps)
    indices = np.asarray(pick(info), dtype=np.int64)
    for start in range(0, len(indices), chunk):
        yield _read_picked(images, indices[start:start + chunk], size)


def _read_picked(images: list[Path], indices: np.ndarray, size: int | None) -> np.ndarray:
    """(len(indices), h, w, 3) of the images at `indices`; images of different sizes are an error."""
    cache: dict[int, np.ndarray] = {}  # num_frames > N picks an image more than once
    for index in indices.tolist():
        if index not in cache:
            cache[index] = _resize_crop(_read_rgb(images[index]), size)
    frames = [cache[index] for index in indices.tolist()]
    for index, frame in zip(indices.tolist(), frames):  # sizes can only differ with size=None
        if frame.shape != frames[0].shape:
            raise VideoDecodeError(f"{images[index]}: image is {frame.shape[1]}x{frame.shape[0]}, "
                                   f"{images[indices[0]].name} is {frames[0].shape[1]}x{frames[0].shape[0]}")
    return np.stack(frames)
