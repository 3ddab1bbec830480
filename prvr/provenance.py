"""Provenance records: what produced a trained model or a metrics file.

Every model and metrics file gets a `provenance.json` beside it with the resolved config, the seed,
the code version (git commit + dirty flag when run from a checkout, and always a hash of the prvr
source files), the sha256 of every input file, and the machine that made it (`machine()`: CPU model,
the instruction set torch's kernels use, torch / MKL / oneDNN / CUDA versions, GPU, threads): another
CPU rounds differently and training amplifies it, so a number names its machine.

    write_provenance("results/demo/runs/baseline/seed1/provenance.json", cfg, seed, {"video_feats": path})
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path

from prvr.config import config_hash, to_dict
from prvr.io import write_json

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes (a directory: of its files' relative names and hashes, sorted).

    A file's hash is remembered for this process under its (path, inode, size, mtime): the trainer
    hashes its inputs for the resume check and provenance hashes them again when the run ends,
    which would read a TVR-size feature store twice; any change to the file makes a new key."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{child.relative_to(path)}\0{sha256_file(child)}\n".encode())
        return digest.hexdigest()
    stat = path.stat()
    return _hash_bytes(str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _hash_bytes(path: str, inode: int, size: int, mtime_ns: int) -> str:
    """sha256 of the file at `path`; the other arguments only key the cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def source_hash() -> str:
    """Hash of the prvr package's Python sources: identifies the code even outside a git checkout."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")) + sorted(root.rglob("*.json")):
        digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def git_version() -> dict:
    """Commit and dirty flag of the checkout holding the prvr package, or {} outside git."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "prvr", "workflow", "config"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def code_version() -> dict:
    """The code version block of a provenance record."""
    import torch
    from prvr import __version__
    return {"prvr": __version__, "source_sha256": source_hash(), **git_version(),
            "python": platform.python_version(), "torch": torch.__version__}


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")  # what changes rounding


@functools.lru_cache(maxsize=1)
def _cpu_info() -> tuple[str, tuple[str, ...]]:
    """(CPU model, the ISA_FLAGS it has) from /proc/cpuinfo; elsewhere platform's name and no flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    flags = next((set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set())
    return model or platform.processor() or platform.machine(), tuple(f for f in ISA_FLAGS if f in flags)


@functools.lru_cache(maxsize=1)
def _build() -> dict:
    """What torch was built with: its MKL and oneDNN versions (from torch.__config__.show())."""
    import torch
    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", shown)
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v([\w.]+)", shown)
    return {"mkl": mkl.group(1) if mkl else None, "onednn": onednn.group(1) if onednn else None}


def machine() -> dict:
    """The machine block of a provenance record: CPU model and core count, the CPU capability
    torch's kernels dispatch to (e.g. AVX2, AVX512), torch, MKL, oneDNN and CUDA versions, the GPU
    (when one is visible) and torch's thread count."""
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    model, flags = _cpu_info()
    return {"cpu": model, "cpu_flags": list(flags), "cpu_cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(), "torch": torch.__version__, **_build(),
            "cuda": torch.version.cuda, "gpu": gpu, "torch_threads": torch.get_num_threads()}


def provenance(cfg, seed: int | None, inputs: dict[str, str | Path], extra: dict | None = None,
               code: dict | None = None) -> dict:
    """Build the record: resolved config, its hash, seed, code version, input hashes.

    code: a `code_version()` taken when the work started (default: now), so a long run records the
    code it started with even if the checkout changes while it runs.
    """
    return {
        "config": to_dict(cfg),
        "config_sha256": config_hash(cfg),
        "seed": seed,
        "code": code or code_version(),
        "inputs": {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in sorted(inputs.items())},
        "machine": machine(),
        **(extra or {}),
    }


def write_provenance(path: str | Path, cfg, seed: int | None, inputs: dict, extra: dict | None = None,
                     code: dict | None = None) -> dict:
    """Write the record atomically and return it."""
    record = provenance(cfg, seed, inputs, extra, code)
    write_json(path, record)
    return record
