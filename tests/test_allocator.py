"""prvr.allocator: glibc's thresholds raised in a child process, the opt-out, a bad value named."""
import os
import subprocess
import sys

import pytest

from prvr.allocator import ENV_VAR, _is_glibc, keep_freed_memory
from prvr.errors import ConfigError

CHILD = """
import ctypes, resource
from prvr.allocator import keep_freed_memory
kept = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # 64 MB (as torch allocates a tensor: malloc, written, freed), above glibc's largest
    block = libc.malloc(64 << 20)  # dynamic mmap threshold: mapped afresh each time by default
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _child(env_value: str | None) -> tuple[bool, int]:
    """(whether the setting took, minor page faults of the loop) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if env_value is not None:
        env[ENV_VAR] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")
def test_freed_blocks_are_reused_not_faulted_in_again():
    kept, faults = _child(None)
    default_kept, default_faults = _child("0")
    assert kept and not default_kept
    pages = 20 * (64 << 20) // 4096  # every array faulted in afresh: 20 x 16,384 pages
    assert default_faults > pages // 2  # glibc's default maps each array anew
    assert faults < pages // 4  # kept: the first array's pages are reused by the next ones


def test_bad_environment_value_is_one_line():
    with pytest.raises(ConfigError, match=f"{ENV_VAR}: expected 0 or 1, got 'yes'"):
        keep_freed_memory({ENV_VAR: "yes"})


def test_opt_out_leaves_glibc_defaults():
    assert keep_freed_memory({ENV_VAR: "0"}) is False
