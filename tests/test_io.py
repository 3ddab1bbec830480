"""prvr.io.atomic_path: whole-or-nothing files, no temp file left on error, normal file modes."""
import os
import stat

import pytest

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
