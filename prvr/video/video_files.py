"""Find each video id's file in a folder by exact name: `<id>.<extension>`, never a pattern.

An id is matched against file names literally (an id like `vid[b]` or `v*` is not a glob), only
regular files count (a folder named `x.mp4` is not a video), and two files for one id
(`v1.mp4` and `v1.mkv`) are an error rather than a silent pick.

    paths = video_files("videos/", ["v1", "vid[b]"])   # {"v1": Path("videos/v1.mp4"), ...}
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from prvr.errors import PrvrError


class VideoFileError(PrvrError, FileNotFoundError):
    """A video id has no file, or more than one, in its folder."""


def index_folder(videos_dir: str | Path) -> dict[str, list[Path]]:
    """{name without its last extension: [regular files with that name]} of one folder."""
    videos_dir = Path(videos_dir)
    try:
        entries = list(os.scandir(videos_dir))
    except OSError as err:
        raise VideoFileError(f"{videos_dir}: cannot list the video folder ({err.strerror})") from None
    index: dict[str, list[Path]] = {}
    for entry in entries:
        stem, dot, _ = entry.name.rpartition(".")
        if dot and stem and entry.is_file():
            index.setdefault(stem, []).append(Path(entry.path))
    return index


def video_files(videos_dir: str | Path, vids: list[str]) -> dict[str, Path]:
    """The one file `<id>.<ext>` of each id in `vids`; a missing or doubled id is a one-line error."""
    index = index_folder(videos_dir)
    paths = {}
    for vid in vids:
        found = sorted(index.get(vid, []))
        if not found:
            raise VideoFileError(f"{videos_dir}: no video file for id {vid!r} (expected {vid}.<ext>)")
        if len(found) > 1:
            raise VideoFileError(f"{videos_dir}: {len(found)} files for id {vid!r}: "
                                 f"{', '.join(p.name for p in found)}")
        paths[vid] = found[0]
    return paths


def frame_folders(frames_dir: str | Path, vids: list[str]) -> dict[str, Path]:
    """The folder `<id>/` of images of each id in `vids` (TVR's released frames); exact names only."""
    frames_dir = Path(frames_dir)
    try:
        folders = {entry.name: Path(entry.path) for entry in os.scandir(frames_dir) if entry.is_dir()}
    except OSError as err:
        raise VideoFileError(f"{frames_dir}: cannot list the frame folder ({err.strerror})") from None
    missing = [vid for vid in vids if vid not in folders]
    if missing:
        raise VideoFileError(f"{frames_dir}: no frame folder for id {missing[0]!r} (expected {missing[0]}/; "
                             f"{len(missing)} of {len(vids)} ids missing)")
    return {vid: folders[vid] for vid in vids}


def sources_fingerprint(videos_dir: str | Path, vids: list[str], folders: bool = False) -> str:
    """A hash of what each id's source is now: its file's name, size and modification time (with
    `folders`, its frame folder's modification time, which moves when an image is added, removed or
    renamed; one stat per video, not one per image), or "missing". A replaced, touched or deleted
    video changes it, so the workflow re-extracts the features (Snakemake dates a folder input by the
    folder alone); a missing one then fails extraction with the one-line error naming it."""
    index = {} if folders else _index_or_empty(videos_dir)
    digest = hashlib.sha256()
    for vid in vids:
        paths = [Path(videos_dir) / vid] if folders else sorted(index.get(vid, []))
        stamps = [stamp for stamp in map(_stamp, paths) if stamp]
        digest.update(f"{vid}\0{'|'.join(stamps) or 'missing'}\0".encode())
    return digest.hexdigest()[:16]


def _stamp(path: Path) -> str | None:
    """name:size:mtime_ns of a file or folder, None when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _index_or_empty(videos_dir: str | Path) -> dict[str, list[Path]]:
    try:
        return index_folder(videos_dir)
    except VideoFileError:
        return {}  # the folder itself is missing: every id fingerprints as "missing"
