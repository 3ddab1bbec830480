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
import json
import os
import tempfile
from pathlib import Path


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
    untouched. The renamed file has mode 0o666 & ~umask, as a plain open(path, "w") would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        tmp = Path(name)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # after the block: some writers replace the file they are given
        os.replace(tmp, path)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # already gone after a successful replace


def write_json(path: str | Path, data, indent: int = 2) -> None:
    """Write JSON atomically, keys sorted so reruns give identical bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
