"""redirect_native_stderr: what C code writes to fd 2 goes to the log file, and fd 2 comes back."""
import os
from pathlib import Path

import pytest

from prvr.video.decoding import VideoDecodeError, decode_video, resolve_backend
from prvr.video.native_log import redirect_native_stderr

CORRUPT = Path(__file__).parent / "data" / "videos" / "decord_corrupted.mp4"


def test_fd2_writes_land_in_the_log_not_on_the_console(tmp_path, capfd):
    log = tmp_path / "logs" / "extract.log"  # parent folders are created
    os.write(2, b"before\n")
    with redirect_native_stderr(log) as where:
        assert where == log
        os.write(2, b"[h264 @ 0x1] error while decoding MB 3 4\n")  # as FFmpeg's C code does
    os.write(2, b"after\n")
    console = capfd.readouterr().err
    assert "before" in console and "after" in console
    assert "decoding MB" not in console
    assert log.read_text() == "[h264 @ 0x1] error while decoding MB 3 4\n"


def test_appends_restores_on_errors_and_none_changes_nothing(tmp_path, capfd):
    log = tmp_path / "rule.log"
    log.write_text("earlier run\n")
    with pytest.raises(RuntimeError):
        with redirect_native_stderr(log):
            os.write(2, b"inside\n")
            raise RuntimeError("decoding failed")
    with redirect_native_stderr(None) as where:
        assert where is None
        os.write(2, b"unredirected\n")
    assert log.read_text() == "earlier run\ninside\n"
    assert "unredirected" in capfd.readouterr().err


@pytest.mark.skipif(resolve_backend("auto") != "decord", reason="decord not installed")
def test_decord_warnings_of_a_corrupt_file_go_to_the_log(tmp_path, capfd):
    log = tmp_path / "decode.log"
    with redirect_native_stderr(log):
        with pytest.raises(VideoDecodeError, match="corrupt"):
            decode_video(CORRUPT, fps=2.0, size=32, backend="decord")
    assert "NAL unit" in log.read_text()  # "[h264 @ 0x..] Invalid NAL unit size (-1 > 551)."
    assert "NAL unit" not in capfd.readouterr().err
