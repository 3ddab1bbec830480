"""prvr.sources.download against a local HTTP server (127.0.0.1, never the internet), and archives."""
from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prvr.sources import archives
from prvr.sources import download as dl
from prvr.sources.archives import extract_archive, is_complete, read_marker
from prvr.sources.download import DownloadError, download_file
from prvr.errors import PrvrError

VIDEO = Path(__file__).parent / "data" / "videos" / "decord_video_0.mov"
PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves files under server.root; honours `Range: bytes=N-` unless told to misbehave."""

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if srv.stall_s:
            time.sleep(srv.stall_s)
        if srv.force_status:
            return self.send_error(srv.force_status)
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            return self.send_error(404)
        data, start = path.read_bytes(), 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not srv.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops > 0:  # promise the whole body, send part of it, hang up
            srv.drops -= 1
            body = body[:srv.drop_after]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A ThreadingHTTPServer on 127.0.0.1:<free port> serving tmp_path/www; switches on the object."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root, srv.requests = root, []
    srv.ignore_range, srv.drops, srv.drop_after, srv.force_status, srv.stall_s = False, 0, 0, None, 0
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF_S", 0.0)


def _get(server, dest, **kwargs):
    kwargs.setdefault("progress", False)
    return download_file(f"{server.url}/data.bin", dest, chunk_size=16 << 10, **kwargs)


def test_full_download_with_sha256(server, tmp_path):
    dest = tmp_path / "out" / "data.bin"
    assert _get(server, dest, sha256=SHA.upper(), md5=hashlib.md5(PAYLOAD).hexdigest()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "out" / "data.bin.part").exists()
    assert [r["range"] for r in server.requests] == [None]


def test_dropped_connection_resumes_with_range(server, tmp_path):
    server.drops, server.drop_after = 1, 100_000
    dest = _get(server, tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-"]


def test_leftover_part_file_is_resumed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:123_456])
    assert _get(server, tmp_path / "data.bin", sha256=SHA).read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=123456-"]


def test_whole_part_file_after_a_kill_is_just_renamed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)  # killed between the last byte and the rename
    assert _get(server, tmp_path / "data.bin", sha256=SHA).read_bytes() == PAYLOAD
    assert len(server.requests) == 1  # answered 416 "bytes */300000": nothing more to fetch


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, caplog):
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"x" * 50_000)  # would corrupt the file if appended to
    assert _get(server, tmp_path / "data.bin", sha256=SHA).read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == "bytes=50000-"
    assert "restarting from byte 0" in caplog.text


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as info:
        _get(server, dest, sha256="0" * 64)
    assert str(info.value) == f"{server.url}/data.bin: sha256 mismatch: expected {'0' * 64}, got {SHA}"
    assert isinstance(info.value, PrvrError)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


def test_404_is_one_line_error_naming_the_url_and_not_retried(server, tmp_path):
    url = f"{server.url}/nope.zip"
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "nope.zip", progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(url) and "404" in message
    assert len(server.requests) == 1
    assert not (tmp_path / "nope.zip").exists()


def test_server_errors_are_retried_then_reported(server, tmp_path):
    server.force_status = 503
    with pytest.raises(DownloadError, match=r"HTTP 503 .*gave up after 3 attempts"):
        _get(server, tmp_path / "data.bin", retries=2)
    assert len(server.requests) == 3


def test_timeout_is_retried_then_reported(server, tmp_path):
    server.stall_s = 0.5
    with pytest.raises(DownloadError, match=r"data\.bin: timed out after 0\.1s"):
        _get(server, tmp_path / "data.bin", retries=1, timeout=0.1)
    assert len(server.requests) == 2


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.zip"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*refused") as info:
        download_file(url, tmp_path / "x.zip", retries=1, progress=False)
    assert "\n" not in str(info.value)


def test_existing_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    assert _get(server, dest, sha256=SHA) == dest
    assert _get(server, dest) == dest  # no checksum: dest only ever appears whole
    assert server.requests == []


def test_existing_file_with_wrong_checksum_is_replaced(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"stale")
    assert _get(server, dest, sha256=SHA).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_only_http_urls(tmp_path):
    with pytest.raises(DownloadError, match="only http"):
        download_file("file:///etc/passwd", tmp_path / "x")


# --- archives -----------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _no_temp_dirs(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.endswith((".extracting", ".old"))]


def test_zip_extraction_with_members_under(tmp_path, monkeypatch):
    video = VIDEO.read_bytes()
    archive = _zip(tmp_path / "Charades_v1_480.zip", {
        "Charades_v1_480/": b"", "Charades_v1_480/AAAAA.mov": video,
        "Charades_v1_480/notes.txt": b"hi", "other/BBBBB.mp4": b"not extracted"})
    out = tmp_path / "videos"
    videos = extract_archive(archive, out, members_under="Charades_v1_480/")
    assert videos == [out / "AAAAA.mov"]
    assert (out / "AAAAA.mov").read_bytes() == video
    assert sorted(p.name for p in out.iterdir()) == [".complete", "AAAAA.mov", "notes.txt"]
    marker = read_marker(out)
    assert marker["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (marker["files"], marker["videos"], marker["members_under"]) == (2, 1, "Charades_v1_480")
    assert is_complete(out, marker["archive_sha256"]) and _no_temp_dirs(tmp_path)
    # A second run finds the marker and unpacks nothing.
    monkeypatch.setattr(archives, "_unpack", lambda *a: pytest.fail("extracted again"))
    assert extract_archive(archive, out, members_under="Charades_v1_480") == videos


def test_tar_gz_extraction_keeps_folders(tmp_path):
    archive = _tar(tmp_path / "v.tar.gz", [("videos/x.mov", VIDEO.read_bytes()),
                                           _link("videos/y.mov", "x.mov")])  # a link that stays inside
    out = tmp_path / "out"
    assert extract_archive(archive, out) == [out / "videos/x.mov", out / "videos/y.mov"]
    assert (out / "videos" / "y.mov").read_bytes() == VIDEO.read_bytes()
    assert read_marker(out)["files"] == 2 and is_complete(out)
    (out / "videos" / "x.mov").unlink()
    assert not is_complete(out)  # a file gone since the extraction


@pytest.mark.parametrize("bad", [
    ("zip", "../evil.mov"), ("zip", "/abs/evil.mov"), ("tar", "../../evil.mov"),
    ("tar", "/tmp/prvr_evil.mov"), ("tar", _link("ok/l", "../../..")), ("tar", _link("l", "/etc")),
    ("tar", _link("h", "/etc/passwd", tarfile.LNKTYPE))])
def test_member_escaping_the_output_folder_is_refused(tmp_path, bad):
    kind, member = bad
    good = ("fine.mov", VIDEO.read_bytes())
    if kind == "zip":
        archive = _zip(tmp_path / "a.zip", {good[0]: good[1], member: b"evil"})
    else:
        archive = _tar(tmp_path / "a.tar.gz", [good, member if isinstance(member, tarfile.TarInfo)
                                               else (member, b"evil")])
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="refusing to extract") as info:
        extract_archive(archive, out)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(archive))
    assert not out.exists() and _no_temp_dirs(tmp_path)
    assert not list(tmp_path.rglob("evil.mov")) and not Path("/tmp/prvr_evil.mov").exists()


def test_link_escaping_through_another_link_is_refused(tmp_path):
    # Each link looks inside on its own: a/b/l -> ../.. is the root; a/b/m -> l/../x is, read as
    # text, a/b/x, but through l it is the root's parent.
    archive = _tar(tmp_path / "a.tar.gz", [_link("a/b/m", "l/../x"), _link("a/b/l", "../..")])
    with pytest.raises(DownloadError, match="through another link"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _no_temp_dirs(tmp_path)


def test_file_written_through_an_escaping_link_is_refused(tmp_path):
    # a/b/m -> l/.. reads as a/b, but through l (the root) it is the root's parent, tmp_path.
    archive = _tar(tmp_path / "a.tar.gz", [_link("a/b/l", "../.."), _link("a/b/m", "l/.."),
                                           ("a/b/m/evil.mov", b"evil")])
    with pytest.raises(DownloadError, match="through a link; refusing"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.mov").exists() and not (tmp_path / "out").exists()


def test_interrupted_extraction_leaves_no_output(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "a.zip", {"a.mov": b"1", "b.mov": b"2"})
    calls, real_copy = [], shutil.copyfileobj

    def copy(src, dst, length=0):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed half way through
        real_copy(src, dst)

    monkeypatch.setattr(archives.shutil, "copyfileobj", copy)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _no_temp_dirs(tmp_path)


def test_foreign_output_folder_is_not_replaced(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a.mov": b"1"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(DownloadError, match="no .complete marker"):
        extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep" and _no_temp_dirs(tmp_path)


def test_new_archive_replaces_an_earlier_extraction(tmp_path):
    out = tmp_path / "out"
    extract_archive(_zip(tmp_path / "a.zip", {"a.mov": b"1"}), out)
    assert extract_archive(_zip(tmp_path / "b.zip", {"b.mov": b"2"}), out) == [out / "b.mov"]
    assert not (out / "a.mov").exists() and json.loads((out / ".complete").read_text())["archive"] == "b.zip"
    assert _no_temp_dirs(tmp_path)


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match=r"x\.zip: not a zip or tar archive"):
        extract_archive(tmp_path / "x.zip", tmp_path / "out")
    with pytest.raises(DownloadError, match="archive not found"):
        extract_archive(tmp_path / "none.zip", tmp_path / "out")
