"""Glue for the Snakemake scripts (workflow/scripts/*.py); imports nothing from Snakemake.

    run_step(snakemake, main)   # main(snakemake, cfg) does the work

Sends the step's stdout/stderr (tqdm included, and what C libraries such as decord and FFmpeg write
to file descriptor 2) to the rule's log file, keeps freed memory in the process (`prvr.allocator`),
builds the typed config from the (schema-validated) Snakemake config, and turns a PrvrError into its
one-line message (in the log and on stderr) with exit status 1 instead of a traceback.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from prvr.allocator import keep_freed_memory
from prvr.config import from_dict
from prvr.video.native_log import redirect_native_stderr
from prvr.errors import PrvrError


def run_step(smk, main) -> None:
    """Run main(smk, cfg) with logging to smk.log[0] and one-line errors."""
    log_path = Path(smk.log[0]) if len(smk.log) else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TQDM_MININTERVAL", "10")  # progress lines in a log file, not a flood
        log_path.write_text("")  # a fresh log per run; both writers below append (O_APPEND), never overwrite
    with open(log_path, "a", buffering=1) if log_path else contextlib.nullcontext(sys.stderr) as log:
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                    redirect_native_stderr(log_path):  # decord/FFmpeg print from C straight to fd 2
                keep_freed_memory()  # big tensors reused, not faulted in afresh (prvr.allocator)
                cfg = from_dict(dict(smk.config), "config")
                main(smk, cfg)
        except PrvrError as err:
            message = f"prvr error in rule {smk.rule}: {err}"
            print(message, file=log)
            print(message, file=sys.__stderr__)
            sys.exit(1)
