"""Which videos to index: every video file of a folder, or the files named in a list file.

    videos = list_videos("my_videos/")        # {"clip1": Path("my_videos/clip1.mp4"), ...}
    videos = list_videos("videos.txt")        # one path a line; relative paths from the list's folder
    videos = list_videos("frames/", frame_folders=True)   # {"clip1": Path("frames/clip1"), ...}

A video's id is its file name without the last extension. In a folder only regular files with a
video extension count (VIDEO_EXTENSIONS); a list names files of any extension. With frame_folders
(TVR's released frames: one folder of images per video) a folder's subfolders are the videos, each
id its folder's name, and a list names folders. Two videos with one id, or a missing folder or list,
is a one-line PrvrError; a listed file that does not exist is left to the indexer, which lists it as
broken.
"""
from __future__ import annotations

from pathlib import Path

from prvr.errors import PrvrError
from prvr.video.video_files import index_folder

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


def list_videos(source: str | Path, frame_folders: bool = False) -> dict[str, Path]:
    """{video id: file (or frame folder)}, sorted by id, of a folder of videos or a list file."""
    source = Path(source)
    if source.is_dir() and frame_folders:
        files = [p for p in source.iterdir() if p.is_dir()]
    elif source.is_dir():
        files = [p for paths in index_folder(source).values() for p in paths
                 if p.suffix.lower() in VIDEO_EXTENSIONS]
    elif source.is_file():
        files = _listed(source)
    else:
        raise PrvrError(f"{source}: no such folder of videos or list file")
    found: dict[str, Path] = {}
    for path in sorted(files):
        vid = path.name if frame_folders else path.name.rpartition(".")[0] or path.name
        if vid in found:
            raise PrvrError(f"{source}: two videos with the id {vid!r}: {found[vid]} and {path}")
        found[vid] = path
    return dict(sorted(found.items()))


def _listed(list_file: Path) -> list[Path]:
    """The paths of a list file (blank lines and lines starting with # skipped)."""
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PrvrError(f"{list_file}: cannot read the video list ({err})") from None
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths.append(Path(line) if Path(line).is_absolute() else list_file.parent / line)
    return paths
