"""Fetch a benchmark's video archive over HTTP(S), resumably (e.g. Charades_v1_480.zip); unpacking it
is prvr.sources.archives.

    zip_path = download_file(CHARADES_URL, "data/charades/Charades_v1_480.zip", sha256=None)

download_file streams into `<dest>.part` and renames it onto `dest` only once it is whole (and its
checksum, if given, matches), so `dest` existing means "complete". A killed download is resumed
from the `.part` file with an HTTP Range request; a server that ignores Range makes it start over.

Every failure raises DownloadError with a one-line message naming the URL or the archive.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from prvr.errors import PrvrError

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
