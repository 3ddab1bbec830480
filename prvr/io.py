"""Atomic file output: every file the pipeline writes appears whole or not at all.

    with atomic_path("results/x.json") as tmp:
        tmp.write_text(...)        # renamed onto results/x.json only if the block succeeds

The temporary file sits beside the target as `.<name>.<random>.prvr.tmp`. It is removed on every
exception Python can see (KeyboardInterrupt and SystemExit included), but a process killed by
SIGKILL (or by a signal left at its default action, e.g. SIGTERM) cannot clean up: any
`.*.prvr.tmp` file left behind is an unfinished write and is always safe to delete.

The finished file gets the mode a plain `open(path, "w")` would give a new file, 0o666 & ~umask
(mkstemp alone would leave it 0600, unreadable to the rest of a shared cluster group).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from prvr.errors import WriteError


TEMP_SUFFIX = ".prvr.tmp"


def _umask() -> int:
    """The process umask, read without changing it where Linux allows.

    /proc/self/status ("Umask:", Linux >= 4.7) is a plain read, so no other thread can ever see a
    changed umask. Elsewhere fall back to os.umask(0) + immediate restore: a window of a few
    instructions in which a file created by another thread would get umask 0 (too open, never too
    closed); nothing in prvr creates files from several threads.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it onto `path` when the block exits cleanly.

    On any exception (BaseException included) the temporary file is removed and `path` is left
    untouched. The renamed file has mode 0o666 & ~umask, as a plain open(path, "w") would. A write
    that the file system refuses (disk full, quota, read-only or immutable folder) is a WriteError
    naming `path` and the reason, and the temporary file if it could not be removed either.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        tmp = Path(name)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # after the block: some writers replace the file they are given
        os.replace(tmp, path)
    except BaseException as err:
        refused = _refused_write(err, path, tmp)
        left = _remove(tmp)
        if refused is None:
            raise
        raise WriteError(f"{path}: cannot write ({refused.strerror or _first_line(refused)})"
                         + (f"; the unfinished {left} could not be removed either: delete it" if left else "")) from None
    _remove(tmp)  # already gone after a successful replace


# errno values that mean "this file system will not take the write", whatever file the error names
REFUSED_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _refused_write(err: BaseException, path: Path, tmp: Path | None) -> OSError | None:
    """The OSError behind `err` (itself or one it was raised from: torch.save turns a full disk into
    a RuntimeError) that says the file system refused to write `path`; None for anything else (say,
    a missing input read inside the block)."""
    ours = {str(path), str(path.parent)} | ({str(tmp)} if tmp else set())
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and (err.errno in REFUSED_WRITE or (
                err.errno in (errno.EPERM, errno.EACCES)
                and (err.filename is None or str(err.filename) in ours or _is_temp_of(err.filename, path)))):
            return err
        err = err.__cause__ or err.__context__
    return None


def _is_temp_of(filename, path: Path) -> bool:
    """True for a name mkstemp tried for `path` (it names the file it could not create)."""
    name = Path(filename)
    return name.parent == path.parent and name.name.startswith(f".{path.name}.") and name.name.endswith(TEMP_SUFFIX)


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _remove(tmp: Path | None) -> Path | None:
    """Remove the temporary file; return it when that failed (an immutable or read-only folder)."""
    if tmp is None:
        return None
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        return tmp
    return None


def write_json(path: str | Path, data, indent: int = 2) -> None:
    """Write JSON atomically, keys sorted so reruns give identical bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
