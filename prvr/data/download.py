"""Fetch a benchmark's video archive over HTTP(S) and unpack it safely (e.g. Charades_v1_480.zip).

    zip_path = download_file(CHARADES_URL, "data/charades/Charades_v1_480.zip", sha256=None)
    videos = extract_archive(zip_path, "data/charades/videos", members_under="Charades_v1_480")

download_file streams into `<dest>.part` and renames it onto `dest` only once it is whole (and its
checksum, if given, matches), so `dest` existing means "complete". A killed download is resumed
from the `.part` file with an HTTP Range request; a server that ignores Range makes it start over.

extract_archive unpacks into a hidden `.<out_dir>.<random>.extracting` folder beside `out_dir`,
writes `out_dir/.complete` (JSON: archive name, size, sha256, file count) and only then renames the
folder onto `out_dir`; a leftover `*.extracting` folder is an interrupted run and safe to delete.
Members that would land outside `out_dir` (`..`, absolute paths, links pointing out) are refused.

Every failure raises DownloadError with a one-line message naming the URL or the archive.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PureWindowsPath

from tqdm import tqdm

from prvr.errors import PrvrError
from prvr.io import write_json

log = logging.getLogger(__name__)

CHARADES_URL = "https://ai2-public-datasets.s3-us-west-2.amazonaws.com/charades/Charades_v1_480.zip"
MARKER_NAME = ".complete"
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg",
                            ".flv", ".3gp", ".wmv"})
BACKOFF_S = 2.0  # first retry delay; doubles each retry (tests set it to 0)
# Client errors a retry cannot fix; everything else (5xx, 408, 429, network) is retried.
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410, 451})


class DownloadError(PrvrError):
    """A download or an extraction failed; the message is one line naming the URL or archive."""


class _Transient(Exception):
    """An attempt ended early for a reason a retry may fix (e.g. the connection dropped)."""


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks (archives are many GB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _checksum_problem(path: Path, sha256: str | None, md5: str | None) -> str | None:
    """None if every given checksum matches, else "<algo> mismatch: expected X, got Y"."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        expected = (expected or "").strip().lower()
        if expected and (got := file_digest(path, algorithm)) != expected:
            return f"{algorithm} mismatch: expected {expected}, got {got}"
    return None


def _one_line(err: BaseException, timeout: float) -> str:
    """A short cause for the error line: "HTTP 404 Not Found", "timed out after 60s", ..."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, TimeoutError):
        return f"timed out after {timeout:g}s"
    return " ".join(str(err).split()) or type(err).__name__


def _total_size(resp, offset: int) -> int | None:
    """Full size of the remote file: from Content-Range if present, else offset + Content-Length."""
    match = re.search(r"/(\d+)\s*$", resp.headers.get("Content-Range") or "")
    if match:
        return int(match.group(1))
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _resume_offset(url: str, resp, part: Path, offset: int) -> int:
    """The byte at which this response's body starts in the file; truncation happens at open."""
    if offset and resp.status == 200:
        log.warning("%s: server ignored the Range request (200, not 206); restarting from byte 0", url)
        return 0
    if resp.status == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range") or "")
        if not match or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)  # the body would not line up with what we have
            raise _Transient(f"server resumed at {resp.headers.get('Content-Range')!r}, "
                             f"not byte {offset}; restarting")
    return offset


def _after_416(url: str, err: urllib.error.HTTPError, part: Path, offset: int) -> None:
    """416 on a resume: the .part is already whole (killed before the rename), or it is bad."""
    match = re.search(r"\*/(\d+)", err.headers.get("Content-Range") or "")
    if match and int(match.group(1)) == offset:
        return
    log.warning("%s: server refused to resume at byte %d (HTTP 416); restarting from byte 0", url, offset)
    part.unlink(missing_ok=True)
    raise _Transient("HTTP 416 on resume")


def _attempt(url: str, part: Path, chunk_size: int, timeout: float, progress: bool) -> None:
    """One request: append the rest of the file to `part`; return once it holds every byte."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "prvr-download", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            err.close()
            return _after_416(url, err, part, offset)
        raise
    with resp:
        offset = _resume_offset(url, resp, part, offset)
        total = _total_size(resp, offset)
        with open(part, "ab" if offset else "wb") as fh, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[:-len(".part")], disable=not progress, leave=False) as bar:
            while chunk := resp.read(chunk_size):
                fh.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    # http.client returns b"" when the peer closes early instead of raising: compare sizes ourselves.
    if total is not None and size != total:
        raise _Transient(f"connection closed after {size} of {total} bytes")


def _fetch_with_retries(url: str, part: Path, chunk_size: int, retries: int, timeout: float,
                        progress: bool) -> None:
    """Run attempts until `part` is whole; retry transient failures with exponential backoff."""
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            return _attempt(url, part, chunk_size, timeout, progress)
        except (_Transient, OSError, http.client.HTTPException) as err:
            cause = _one_line(err, timeout)
            if isinstance(err, urllib.error.HTTPError):
                err.close()  # an HTTPError holds the open response (its error page)
            if isinstance(err, urllib.error.HTTPError) and err.code in PERMANENT_HTTP:
                raise DownloadError(f"{url}: {cause}") from None
            after = part.stat().st_size if part.exists() else 0
            # An attempt that got bytes earns fresh retries: a 14 GB file over a flaky link may
            # need many resumes, each of which makes progress.
            failures = 1 if after > before else failures + 1
            if failures > retries:
                raise DownloadError(f"{url}: {cause} (gave up after {retries + 1} attempts)") from None
            delay = BACKOFF_S * 2 ** (failures - 1)
            log.warning("%s: %s; retry %d/%d in %gs (resuming at byte %d)",
                        url, cause, failures, retries, delay, after)
            time.sleep(delay)


def download_file(url: str, dest: str | Path, sha256: str | None = None, md5: str | None = None,
                  chunk_size: int = 1 << 20, retries: int = 3, timeout: float = 60,
                  progress: bool = True) -> Path:
    """Download `url` to `dest` (resumable, verified, atomic); return `dest`.

    A `dest` that already exists is kept when it matches the given checksums (or when none are
    given: `dest` only ever appears complete). A checksum mismatch removes the download and raises.
    """
    if not re.match(r"https?://", url):
        raise DownloadError(f"{url}: only http:// and https:// URLs can be downloaded")
    dest = Path(dest)
    if dest.is_file():
        problem = _checksum_problem(dest, sha256, md5)
        if problem is None:
            log.info("%s: already downloaded", dest)
            return dest
        log.warning("%s: existing file has a %s; downloading again", dest, problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_with_retries(url, part, chunk_size, retries, timeout, progress)
    problem = _checksum_problem(part, sha256, md5)
    if problem:
        part.unlink(missing_ok=True)  # resuming a wrong file would only keep it wrong
        raise DownloadError(f"{url}: {problem}")
    os.replace(part, dest)
    return dest


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
        raise DownloadError(f"{archive}: cannot extract ({_one_line(err, 0)})") from None
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
