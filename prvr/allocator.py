"""Keep freed memory inside the process instead of handing it back to the OS (glibc's malloc).

Why: glibc serves a block larger than its mmap threshold (128 KiB, raised as blocks are freed, to
32 MiB at most) with a fresh `mmap` and unmaps it on free. A training step at the paper's TVR shape
allocates and frees gigabytes of activations, so each step the kernel faulted about a million fresh
pages in and zeroed them: 2.0-2.5 s of system time per step (of 18-20 CPU seconds). With the mmap and
trim thresholds at their largest (2 GiB - 1; `mallopt` takes an int) such blocks come from the heap
and are reused after free: 14 k-27 k faults and under 0.1 s of system time per step; the bfloat16
step 9.79 -> 8.56 s, a float32 step with activation checkpointing 44.2 -> 22.5 s (docs/performance.md).
The price: a process holds what it freed, and its peak rose by 0.8-2.9 GB at the TVR shape. No number
changes: torch aligns every tensor to 64 bytes either way; weights after three steps (float32 and
bfloat16), a pretraining and the demo's tables were identical to the bit.

Every Snakemake step (`prvr.pipeline.run_step`), the CLI and the benchmarks call it once at start.
`PRVR_KEEP_FREED_MEMORY=0` in the environment leaves glibc's defaults (for a node where many processes
share the memory); other platforms (macOS, musl) keep theirs.

    keep_freed_memory()   # True where glibc took the setting
"""
from __future__ import annotations

import ctypes
import os

from prvr.errors import ConfigError

ENV_VAR = "PRVR_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
LARGEST = 2**31 - 1  # mallopt's value is a C int


def keep_freed_memory(environ: dict | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds to their largest (see the module docstring).
    False where the environment opts out or the C library is not glibc."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "1")
    if value not in ("0", "1"):
        raise ConfigError(f"environment variable {ENV_VAR}: expected 0 or 1, got {value!r}")
    if value == "0" or not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, LARGEST))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a GNU C library (or no confstr at all)
        return False
