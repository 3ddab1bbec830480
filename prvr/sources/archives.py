"""Unpack a downloaded video archive safely (zip, tar, tar.gz/bz2/xz), e.g. Charades_v1_480.zip.

    videos = extract_archive(zip_path, "data/charades/videos", members_under="Charades_v1_480")

extract_archive unpacks into a hidden `.<out_dir>.<random>.extracting` folder beside `out_dir`,
writes `out_dir/.complete` (JSON: archive name, size, sha256, file count) and only then renames the
folder onto `out_dir`; a leftover `*.extracting` folder is an interrupted run and safe to delete.
Members that would land outside `out_dir` (`..`, absolute paths, links pointing out) are refused.
Every failure raises DownloadError with a one-line message naming the archive.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PureWindowsPath

from prvr.sources.download import MARKER_NAME, VIDEO_SUFFIXES, DownloadError, file_digest
from prvr.io import write_json

log = logging.getLogger(__name__)

# --- extraction -------------------------------------------------------------------------------


def _members(archive: Path):
    """Yield (name, kind, link_target, opener) for every member of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if info.is_dir():
                    yield info.filename, "dir", None, None
                elif stat.S_ISLNK(mode):
                    yield info.filename, "symlink", zf.read(info).decode("utf-8", "replace"), None
                else:
                    yield info.filename, "file", None, lambda info=info: zf.open(info)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                kind = ("dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk()
                        else "file" if m.isfile() else "other")
                yield m.name, kind, m.linkname or None, lambda m=m: tf.extractfile(m)
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


def _relative(name: str, prefix: str | None, archive: Path) -> str | None:
    """Where a member goes, relative to out_dir; None to skip it; raise if it would escape."""
    clean = name.replace("\\", "/")  # a backslash is a separator on Windows: check it as one
    rel = posixpath.normpath(clean)
    if posixpath.isabs(clean) or PureWindowsPath(name).drive or rel == ".." or rel.startswith("../"):
        raise DownloadError(f"{archive}: member {name!r} would be written outside the output "
                            f"folder (absolute path or '..'); refusing to extract")
    if prefix:
        if not rel.startswith(prefix + "/"):
            return None
        rel = rel[len(prefix) + 1:]
    return None if rel == "." else rel


def _inside(path: str | Path, root: Path) -> bool:
    """Whether `path`, with every symlink resolved, lies in `root`."""
    return Path(os.path.realpath(path)).is_relative_to(root.resolve())


def _write_member(tmp: Path, rel: str, kind: str, link: str | None, opener, archive: Path,
                  prefix: str | None) -> None:
    """Create one member under `tmp`; links must stay inside it."""
    target = tmp / rel
    escape = DownloadError(f"{archive}: member {rel!r} ({kind}) points outside the output folder "
                           f"through a link; refusing to extract")
    # realpath resolves the links among the existing folders, so this also checks folders to be
    # made: nothing, not even an empty folder, is created through a link that leads out.
    if not _inside(target if kind == "dir" else target.parent, tmp):
        raise escape
    if kind == "dir":
        return target.mkdir(parents=True, exist_ok=True)
    if kind == "other":
        raise DownloadError(f"{archive}: member {rel!r} is a device or fifo; refusing to extract")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()  # a later member replaces an earlier one, and never writes through a link
    if kind == "symlink":
        if not _inside(target.parent / link, tmp):  # an absolute `link` replaces the whole path
            raise escape
        return os.symlink(link, target)
    if kind == "hardlink":  # tar: `link` names an earlier member, relative to the archive root
        source = _relative(link, prefix, archive)
        if source is None or not (tmp / source).is_file() or not _inside(tmp / source, tmp):
            raise escape
        return os.link(tmp / source, target)
    with opener() as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _unpack(archive: Path, tmp: Path, prefix: str | None) -> list[str]:
    """Extract every member (under `prefix`) into `tmp`; return the relative paths of the files."""
    files = {}  # insertion-ordered set: a member listed twice is one file
    try:
        for name, kind, link, opener in _members(archive):
            rel = _relative(name, prefix, archive)
            if rel is not None:
                _write_member(tmp, rel, kind, link, opener, archive, prefix)
                files.update({} if kind == "dir" else {rel: None})
    # RuntimeError: an encrypted zip member; NotImplementedError: an unsupported compression.
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError,
            NotImplementedError) as err:
        raise DownloadError(f"{archive}: cannot extract ({' '.join(str(err).split()) or type(err).__name__})") from None
    # Checked once the tree is final: a link can escape through another link made after it.
    for rel in files:
        if (tmp / rel).is_symlink() and not _inside(tmp / rel, tmp):
            raise DownloadError(f"{archive}: member {rel!r} resolves outside the output folder "
                                f"through another link; refusing to extract")
    return sorted(files)


def read_marker(out_dir: str | Path) -> dict | None:
    """The `.complete` manifest of an extraction folder, or None if there is none (or unreadable)."""
    try:
        return json.loads((Path(out_dir) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out_dir: str | Path, archive_sha256: str | None = None) -> bool:
    """Whether out_dir holds a finished extraction (of the archive with this sha256, if given)."""
    marker = read_marker(out_dir)
    if marker is None or (archive_sha256 and marker.get("archive_sha256") != archive_sha256.lower()):
        return False
    on_disk = -1  # the marker itself is not counted
    for root, dirs, names in os.walk(out_dir):  # a link to a folder is listed among `dirs`
        on_disk += len(names) + sum(os.path.islink(os.path.join(root, d)) for d in dirs)
    return on_disk == marker.get("files")


def _videos(root: Path, files: list[str]) -> list[Path]:
    return [root / rel for rel in files if Path(rel).suffix.lower() in VIDEO_SUFFIXES]


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename the finished `tmp` onto `out_dir`, replacing an earlier extraction of ours."""
    if not out_dir.exists():
        return os.replace(tmp, out_dir)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
        return os.replace(tmp, out_dir)
    if read_marker(out_dir) is None:  # not ours: never delete someone's folder
        raise DownloadError(f"{out_dir}: exists, is not empty and has no {MARKER_NAME} marker; "
                            f"move it away before extracting into it")
    old = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.old")
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def extract_archive(archive: str | Path, out_dir: str | Path,
                    members_under: str | None = None) -> list[Path]:
    """Unpack a zip/tar(.gz/.bz2/.xz) into out_dir, all or nothing; return the video files.

    `members_under` ("Charades_v1_480") keeps only the members in that folder of the archive and
    drops the folder from their paths, so the videos land directly in out_dir. An out_dir whose
    marker already records this archive (same sha256, same members_under) is left as it is.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive not found")
    prefix = posixpath.normpath(members_under.replace("\\", "/")).strip("/") if members_under else None
    digest = file_digest(archive)
    marker = read_marker(out_dir)
    if (marker and marker.get("archive_sha256") == digest and marker.get("members_under") == prefix
            and is_complete(out_dir)):
        log.info("%s: already extracted into %s", archive, out_dir)
        return _videos(out_dir, marker.get("paths", []))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp, which makes 0700 folders) so the result has the usual umask mode.
    tmp = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.extracting")
    tmp.mkdir()
    try:
        files = _unpack(archive, tmp, prefix)
        write_json(tmp / MARKER_NAME, {
            "archive": archive.name, "archive_bytes": archive.stat().st_size,
            "archive_sha256": digest, "members_under": prefix, "files": len(files),
            "videos": len(_videos(tmp, files)), "paths": files})
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _videos(out_dir, files)
