"""prvr.io.atomic_path: whole-or-nothing files, no temp file left on error, normal file modes."""
import errno
import os
import shutil
import stat
import subprocess

import pytest

from prvr.errors import PrvrError, WriteError
from prvr.io import TEMP_SUFFIX, _umask, atomic_path, write_json, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    saved = []

    def set_mask(mask):
        saved.append(os.umask(mask))
        return mask
    yield set_mask
    if saved:
        os.umask(saved[0])


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_file_has_the_mode_a_plain_open_gives(tmp_path, umask, mask):
    umask(mask)
    assert _umask() == mask
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "sub" / "b.json", {"k": 1})
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "sub" / "b.json") == _mode(tmp_path / "plain.txt")
    assert _mode(tmp_path / "a.txt") == 0o666 & ~mask


def test_writer_that_recreates_the_temp_file_still_gets_the_mode(tmp_path, umask):
    umask(0o022)
    with atomic_path(tmp_path / "c.bin") as tmp:
        tmp.unlink()
        old = os.umask(0o077)  # the writer made its own 0600 file
        try:
            tmp.write_bytes(b"x")
        finally:
            os.umask(old)
    assert _mode(tmp_path / "c.bin") == 0o644


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_exception_in_block_leaves_no_temp_file_and_old_target(tmp_path, error):
    (tmp_path / "keep.txt").write_text("other")
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(error):
        with atomic_path(tmp_path / "out.txt") as tmp:
            assert tmp.name.startswith(".out.txt.") and tmp.name.endswith(TEMP_SUFFIX)
            tmp.write_text("half")
            raise error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "out.txt"]
    assert (tmp_path / "out.txt").read_text() == "old"


def test_success_leaves_only_the_target(tmp_path):
    write_text(tmp_path / "d" / "x.txt", "new")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.txt"]
    assert (tmp_path / "d" / "x.txt").read_text() == "new"


class FillingDisk:
    """A file object that takes `room` bytes and then fails as a full disk does (ENOSPC)."""

    def __init__(self, fh, room):
        self.fh, self.room = fh, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def flush(self):
        self.fh.flush()


@pytest.mark.parametrize("room", [0, 300])
def test_a_full_disk_under_torch_save_is_one_line_naming_the_file(tmp_path, room):
    """torch.save turns the ENOSPC into a RuntimeError ("unexpected pos"); the error still says why."""
    import torch
    (tmp_path / "out.pt").write_bytes(b"old")
    with pytest.raises(WriteError) as info:
        with atomic_path(tmp_path / "out.pt") as tmp, open(tmp, "wb") as fh:
            torch.save({"w": torch.zeros(1000)}, FillingDisk(fh, room))
    assert str(info.value) == f"{tmp_path / 'out.pt'}: cannot write (No space left on device)"
    assert isinstance(info.value, PrvrError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]
    assert (tmp_path / "out.pt").read_bytes() == b"old"


def test_an_error_reading_an_input_inside_the_block_is_not_called_a_write_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text((tmp_path / "missing_input.txt").read_text())
    with pytest.raises(PermissionError) as info:
        with atomic_path(tmp_path / "out.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.h5")
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


def _chattr(flag, path):
    return shutil.which("chattr") and subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_a_folder_made_immutable_during_the_write_names_the_temp_file_left_behind(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    if not _chattr("+i", folder):
        pytest.skip("this file system does not take chattr +i")
    _chattr("-i", folder)
    left = []
    try:
        with pytest.raises(WriteError) as info:
            with atomic_path(folder / "model.pt") as tmp:
                tmp.write_bytes(b"weights")
                left.append(tmp)
                _chattr("+i", folder)  # the rename and the clean-up are refused from here on
        message = str(info.value)
        assert message == (f"{folder / 'model.pt'}: cannot write (Operation not permitted); the unfinished "
                           f"{left[0]} could not be removed either: delete it")
        with pytest.raises(WriteError, match=r"run/x\.json: cannot write \(Operation not permitted\)$"):
            write_json(folder / "x.json", {})
    finally:
        _chattr("-i", folder)
    assert [p.name for p in folder.iterdir()] == [left[0].name]
