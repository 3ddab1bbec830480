"""Send what C libraries print to stderr (FFmpeg via decord or PyAV) into a log file.

FFmpeg's warnings ("[h264 @ 0x55..] error while decoding MB 3 4") are written by C code straight
to file descriptor 2, past Python's sys.stderr, so they can only be caught by pointing fd 2 itself
elsewhere for a while:

    with redirect_native_stderr(log_path):          # e.g. the Snakemake rule's log file
        frames = decode_video(path, fps=2.0, size=224)

fd 2 is process-wide: while the block runs, Python's own stderr output (warnings, tracebacks
printed by other threads, progress bars) lands in the log too, so wrap the decode call only, and
do not nest it across threads.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def redirect_native_stderr(path: str | Path | None) -> Iterator[Path | None]:
    """Point fd 2 at `path` (appending, parent folders created) for the block; None: change nothing."""
    if path is None:
        yield None
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()  # text Python buffered before the block belongs on the old stderr
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield path
            finally:
                sys.stderr.flush()  # and text written inside the block, in the log
                os.dup2(saved, 2)
    finally:
        os.close(saved)
