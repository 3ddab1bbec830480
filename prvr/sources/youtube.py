"""Fetch ActivityNet videos from YouTube with yt-dlp, and record the ones that are gone.

ActivityNet names a video `v_<11-character YouTube id>`; the file is saved as `<out_dir>/v_<id>.mp4`.
Many of these videos have since been made private or removed, so a video that cannot be fetched
is not an error: it is written to `missing_tsv` with a short reason and the pipeline goes on
without it. Permanent failures (private, removed, copyright, ...) are not retried; transient ones
(HTTP 5xx, rate limits, network) are, with backoff. Ids in `missing_tsv` are tried again on the
next run, so a rerun after a rate limit fills the gaps.

    counts = fetch_youtube(ids, "data/activitynet/videos", "data/activitynet/missing.tsv")
    # {"fetched": 4512, "skipped_present": 9001, "missing": 1390}

yt-dlp is an optional dependency (`pip install -e '.[download]'`), imported only when needed.
"""
from __future__ import annotations

import importlib
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from prvr.video.video_files import index_folder
from prvr.errors import PrvrError
from prvr.io import write_text

log = logging.getLogger(__name__)
_YT_DLP_LOG = logging.getLogger(__name__ + ".yt_dlp")  # has the debug/warning/error yt-dlp calls

URL_TEMPLATE = "https://www.youtube.com/watch?v={}"
TSV_HEADER = "video_id\treason"
BACKOFF_S = 5.0  # first retry delay; doubles each retry (tests set it to 0)
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")

# (substring of yt-dlp's lower-cased error message, reason). First match wins, so the specific
# phrases come before the generic ones ("Private video. Sign in if ..." is "private").
PERMANENT_REASONS = (
    ("private video", "private"), ("video is private", "private"),
    ("copyright", "copyright"),
    ("account associated with this video has been terminated", "removed"),
    ("removed", "removed"), ("deleted", "removed"),
    ("confirm your age", "age_restricted"), ("age-restricted", "age_restricted"),
    ("members-only", "members_only"), ("join this channel", "members_only"),
    ("not made this video available in your country", "geo_blocked"),
    ("blocked it in your country", "geo_blocked"),
    ("video unavailable", "unavailable"), ("not available", "unavailable"),
    ("unavailable", "unavailable"),
)
# Failures a later try may fix; checked before PERMANENT_REASONS ("not a bot" says "sign in" too).
TRANSIENT_REASONS = (
    ("not a bot", "bot_check"), ("http error 429", "rate_limited"), ("too many requests", "rate_limited"),
    ("http error 5", "server_error"), ("timed out", "network"), ("connection", "network"),
    ("unable to download", "network"), ("name resolution", "network"), ("incomplete", "network"),
)
_SIGN_IN = (("sign in", "sign_in"),)  # a login wall that is not a bot check: permanent for us


class MissingYtDlpError(PrvrError, ImportError):
    """yt-dlp is needed but not installed."""


def classify_error(message: str) -> tuple[str, bool]:
    """(short reason, permanent?) for a yt-dlp error message; unknown errors count as transient."""
    text = message.lower()
    for table, permanent in ((TRANSIENT_REASONS, False), (PERMANENT_REASONS, True), (_SIGN_IN, True)):
        for needle, reason in table:
            if needle in text:
                return reason, permanent
    return "error", False


def youtube_id(video_id: str) -> str | None:
    """The YouTube id of an ActivityNet id ("v_abc..." -> "abc..."), or None if it is not one."""
    yid = video_id[2:] if video_id.startswith("v_") else video_id
    return yid if _YOUTUBE_ID.fullmatch(yid) else None


def _import_yt_dlp():
    """The yt_dlp module, or a one-line error saying how to install it."""
    try:
        return importlib.import_module("yt_dlp")
    except ImportError:
        raise MissingYtDlpError("yt-dlp is not installed; it is needed to fetch ActivityNet videos "
                                "from YouTube: pip install -e '.[download]'") from None


def yt_dlp_downloader(format: str = "mp4/best[height<=480]", retries: int = 2) -> Callable:
    """A downloader(url, out_path) backed by yt-dlp; one YoutubeDL per call (it is not thread-safe)."""
    yt_dlp = _import_yt_dlp()

    def download(url: str, out_path: Path) -> None:
        options = {"format": format, "outtmpl": str(out_path).replace("%", "%%"), "quiet": True,
                   "no_warnings": True, "noprogress": True, "noplaylist": True, "retries": retries,
                   "fragment_retries": retries, "overwrites": True,
                   "logger": _YT_DLP_LOG}  # its errors go through logging, not straight to stderr
        # outtmpl is a template ("%" doubled to stay literal); yt-dlp writes `<out>.part` first.
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])

    return download


def _fetch_one(video_id: str, out_dir: Path, downloader: Callable, retries: int) -> str | None:
    """Fetch one video with retries; None on success, else the reason it is missing."""
    yid = youtube_id(video_id)
    if yid is None:
        log.warning("%s: not an ActivityNet id (v_<11-character YouTube id>); skipped", video_id)
        return "invalid_id"
    url, out_path = URL_TEMPLATE.format(yid), out_dir / f"{video_id}.mp4"
    for attempt in range(retries + 1):
        try:
            downloader(url, out_path)
            if out_path.is_file() and out_path.stat().st_size > 0:
                return None
            reason, permanent, message = "no_file", False, "the downloader wrote no file"
        except Exception as err:  # yt-dlp raises its own DownloadError; anything else is classified too
            message = " ".join(str(err).split()) or type(err).__name__
            reason, permanent = classify_error(message)
        if permanent or attempt == retries:
            log.warning("%s: %s (%s)", video_id, reason, message)
            return reason
        delay = BACKOFF_S * 2 ** attempt
        log.info("%s: %s; retry %d/%d in %gs", video_id, message, attempt + 1, retries, delay)
        time.sleep(delay)
    return None  # not reached: the last attempt returns above


def _unique(ids) -> list[str]:
    return list(dict.fromkeys(ids))  # order kept; an id listed twice is fetched once


def write_missing_tsv(path: str | Path, missing: dict[str, str]) -> None:
    """Write `video_id<TAB>reason` rows sorted by id, header first, atomically."""
    rows = [f"{vid}\t{' '.join(reason.split())}" for vid, reason in sorted(missing.items())]
    write_text(path, "\n".join([TSV_HEADER, *rows]) + "\n")


def read_missing_tsv(path: str | Path) -> dict[str, str]:
    """{video_id: reason} from a missing-videos TSV; a malformed file is a one-line PrvrError."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise PrvrError(f"{path}: cannot read the missing-videos list ({err.strerror})") from None
    if not lines or lines[0] != TSV_HEADER:
        raise PrvrError(f"{path}:1: expected the header {TSV_HEADER!r}")
    missing = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0]:
            raise PrvrError(f"{path}:{number}: expected 'video_id<TAB>reason', got {line!r}")
        missing[fields[0]] = fields[1]
    return missing


def fetch_youtube(video_ids, out_dir: str | Path, missing_tsv: str | Path, workers: int = 4,
                  retries: int = 2, format: str = "mp4/best[height<=480]",
                  downloader: Callable | None = None) -> dict:
    """Fetch each ActivityNet video not already in out_dir; record the failures in missing_tsv.

    `downloader(url, out_path)` replaces yt-dlp (tests inject a fake). Returns the counts
    {"fetched", "skipped_present", "missing"}; missing_tsv is always written (header only if
    nothing is missing) so that a workflow rule has its output.
    """
    if workers < 1:
        raise PrvrError(f"fetch_youtube: workers must be >= 1, got {workers}")
    if downloader is None:  # fail before any work when yt-dlp is absent
        downloader = yt_dlp_downloader(format, retries)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = index_folder(out_dir)  # any `<id>.<ext>` counts, not only .mp4
    ids = _unique(video_ids)
    todo = [vid for vid in ids if vid not in present]
    missing: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:  # at most `workers` downloads at once
        futures = {pool.submit(_fetch_one, vid, out_dir, downloader, retries): vid for vid in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="youtube", unit="video"):
            reason = future.result()
            if reason is not None:
                missing[futures[future]] = reason
    write_missing_tsv(missing_tsv, missing)
    counts = {"fetched": len(todo) - len(missing), "skipped_present": len(ids) - len(todo),
              "missing": len(missing)}
    log.info("youtube: %s", counts)
    return counts
