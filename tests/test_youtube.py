"""prvr.sources.youtube with a fake downloader: no yt-dlp, no network."""
from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from prvr.sources import youtube as yt
from prvr.sources.youtube import classify_error, fetch_youtube, read_missing_tsv, youtube_id
from prvr.errors import PrvrError

PRIVATE = "ERROR: [youtube] {}: Private video. Sign in if you've been granted access to this video"
REMOVED = "ERROR: [youtube] {}: Video unavailable. This video has been removed by the uploader"
HTTP_503 = "ERROR: unable to download video data: HTTP Error 503: Service Unavailable"


def vid(n: int) -> str:
    return f"v_{n:011d}"  # v_ + an 11-character YouTube id


class FakeDownloader:
    """Records calls and overlap; `script[youtube id]` lists what each call does (error text or "ok")."""

    def __init__(self, script=None, delay=0.0):
        self.script, self.delay = dict(script or {}), delay
        self.calls, self.active, self.max_active = [], 0, 0
        self.lock = threading.Lock()

    def __call__(self, url, out_path):
        with self.lock:
            self.calls.append(url)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            steps = self.script.get(url.rsplit("=", 1)[1], ["ok"])
            step = steps.pop(0) if len(steps) > 1 else steps[0]
        try:
            time.sleep(self.delay)
            if step != "ok":
                raise RuntimeError(step)
            out_path.write_bytes(b"video bytes")
        finally:
            with self.lock:
                self.active -= 1

    def count(self, video_id):
        return sum(url.endswith("=" + video_id[2:]) for url in self.calls)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(yt, "BACKOFF_S", 0.0)


def test_successes_write_files(tmp_path):
    fake = FakeDownloader()
    counts = fetch_youtube([vid(1), vid(2), vid(1)], tmp_path / "v", tmp_path / "missing.tsv",
                           downloader=fake)
    assert counts == {"fetched": 2, "skipped_present": 0, "missing": 0}
    assert (tmp_path / "v" / f"{vid(1)}.mp4").read_bytes() == b"video bytes"
    assert sorted(fake.calls) == [f"https://www.youtube.com/watch?v={vid(n)[2:]}" for n in (1, 2)]
    assert (tmp_path / "missing.tsv").read_text() == "video_id\treason\n"


def test_permanent_error_is_recorded_and_not_retried(tmp_path):
    fake = FakeDownloader({vid(1)[2:]: [PRIVATE.format(vid(1)[2:])]})
    counts = fetch_youtube([vid(1), vid(2)], tmp_path, tmp_path / "m.tsv", retries=3, downloader=fake)
    assert counts == {"fetched": 1, "skipped_present": 0, "missing": 1}
    assert fake.count(vid(1)) == 1
    assert read_missing_tsv(tmp_path / "m.tsv") == {vid(1): "private"}
    assert not (tmp_path / f"{vid(1)}.mp4").exists()


def test_transient_error_succeeds_on_retry(tmp_path):
    fake = FakeDownloader({vid(1)[2:]: [HTTP_503, "ok"]})
    counts = fetch_youtube([vid(1)], tmp_path, tmp_path / "m.tsv", retries=2, downloader=fake)
    assert counts == {"fetched": 1, "skipped_present": 0, "missing": 0}
    assert fake.count(vid(1)) == 2


def test_transient_error_gives_up_after_the_retries(tmp_path):
    fake = FakeDownloader({vid(1)[2:]: [HTTP_503]})
    counts = fetch_youtube([vid(1)], tmp_path, tmp_path / "m.tsv", retries=2, downloader=fake)
    assert counts["missing"] == 1 and fake.count(vid(1)) == 3
    assert read_missing_tsv(tmp_path / "m.tsv") == {vid(1): "server_error"}


def test_concurrency_is_bounded_by_workers(tmp_path):
    fake = FakeDownloader(delay=0.03)
    ids = [vid(n) for n in range(12)]
    counts = fetch_youtube(ids, tmp_path, tmp_path / "m.tsv", workers=3, downloader=fake)
    assert counts["fetched"] == 12
    assert 2 <= fake.max_active <= 3  # it does run in parallel, never beyond `workers`


def test_present_files_are_skipped(tmp_path):
    (tmp_path / f"{vid(1)}.mp4").write_bytes(b"old")
    (tmp_path / f"{vid(2)}.mkv").write_bytes(b"old")  # any video extension counts
    fake = FakeDownloader()
    counts = fetch_youtube([vid(1), vid(2), vid(3)], tmp_path, tmp_path / "m.tsv", downloader=fake)
    assert counts == {"fetched": 1, "skipped_present": 2, "missing": 0}
    assert fake.calls == [f"https://www.youtube.com/watch?v={vid(3)[2:]}"]
    assert (tmp_path / f"{vid(1)}.mp4").read_bytes() == b"old"


def test_missing_tsv_content_is_exact_and_sorted(tmp_path):
    fake = FakeDownloader({vid(9)[2:]: [REMOVED], vid(3)[2:]: [PRIVATE], vid(5)[2:]: ["boom\twith\ttabs"]})
    fetch_youtube([vid(9), vid(3), vid(5), vid(4), "not-an-id"], tmp_path / "v", tmp_path / "m.tsv",
                  retries=1, downloader=fake)
    assert (tmp_path / "m.tsv").read_text() == (
        "video_id\treason\n"
        "not-an-id\tinvalid_id\n"
        f"{vid(3)}\tprivate\n"
        f"{vid(5)}\terror\n"
        f"{vid(9)}\tremoved\n")


def test_downloader_that_writes_nothing(tmp_path):
    counts = fetch_youtube([vid(1)], tmp_path, tmp_path / "m.tsv", retries=0,
                           downloader=lambda url, out: None)
    assert counts["missing"] == 1 and read_missing_tsv(tmp_path / "m.tsv") == {vid(1): "no_file"}


def test_missing_yt_dlp_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # makes `import yt_dlp` raise ImportError
    with pytest.raises(PrvrError) as info:
        fetch_youtube([vid(1)], tmp_path / "v", tmp_path / "m.tsv")
    message = str(info.value)
    assert "\n" not in message and "pip install -e '.[download]'" in message
    assert not (tmp_path / "m.tsv").exists()


def test_default_downloader_configures_yt_dlp(tmp_path, monkeypatch):
    seen = []

    class YoutubeDL:
        def __init__(self, options):
            self.options = options

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def download(self, urls):
            seen.append((self.options, urls))
            with open(self.options["outtmpl"], "wb") as fh:
                fh.write(b"mp4")

    monkeypatch.setitem(sys.modules, "yt_dlp", types.SimpleNamespace(YoutubeDL=YoutubeDL))
    counts = fetch_youtube([vid(7)], tmp_path, tmp_path / "m.tsv", format="best")
    assert counts["fetched"] == 1
    options, urls = seen[0]
    assert urls == [f"https://www.youtube.com/watch?v={vid(7)[2:]}"]
    assert options["outtmpl"] == str(tmp_path / f"{vid(7)}.mp4")
    assert options["format"] == "best" and options["noplaylist"] and options["quiet"]


@pytest.mark.parametrize("message, expected", [
    (PRIVATE, ("private", True)), (REMOVED, ("removed", True)),
    ("Video unavailable. This video is no longer available due to a copyright claim by X", ("copyright", True)),
    ("Sign in to confirm your age. This video may be inappropriate for some users.", ("age_restricted", True)),
    ("Join this channel to get access to members-only content like this video", ("members_only", True)),
    ("The uploader has not made this video available in your country", ("geo_blocked", True)),
    ("Video unavailable", ("unavailable", True)),
    ("Sign in to confirm you're not a bot", ("bot_check", False)),
    ("HTTP Error 429: Too Many Requests", ("rate_limited", False)),
    (HTTP_503, ("server_error", False)),
    ("<urlopen error [Errno 110] Connection timed out>", ("network", False)),
    ("something new", ("error", False)),
])
def test_classify_error(message, expected):
    assert classify_error(message) == expected


def test_youtube_id():
    assert youtube_id("v_GGSY1Qvo990") == "GGSY1Qvo990"
    assert youtube_id("GGSY1Qvo990") == "GGSY1Qvo990"
    assert youtube_id("v_short") is None


def test_read_missing_tsv_errors(tmp_path):
    with pytest.raises(PrvrError, match="cannot read"):
        read_missing_tsv(tmp_path / "none.tsv")
    (tmp_path / "bad.tsv").write_text("id\treason\n")
    with pytest.raises(PrvrError, match=r"bad\.tsv:1: expected the header"):
        read_missing_tsv(tmp_path / "bad.tsv")
    (tmp_path / "bad.tsv").write_text("video_id\treason\nv_x\n")
    with pytest.raises(PrvrError, match=r"bad\.tsv:2: expected"):
        read_missing_tsv(tmp_path / "bad.tsv")
