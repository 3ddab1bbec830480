"""Provenance records: what produced a trained model or a metrics file.

Every model and metrics file gets a `provenance.json` beside it with the resolved config, the seed,
the code version (git commit + dirty flag when run from a checkout, and always a hash of the prvr
source files) and the sha256 of every input file.

    write_provenance("results/demo/runs/baseline/seed1/provenance.json", cfg, seed, {"video_feats": path})
"""
from __future__ import annotations

import functools
import hashlib
import platform
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
        **(extra or {}),
    }


def write_provenance(path: str | Path, cfg, seed: int | None, inputs: dict, extra: dict | None = None,
                     code: dict | None = None) -> dict:
    """Write the record atomically and return it."""
    record = provenance(cfg, seed, inputs, extra, code)
    write_json(path, record)
    return record
