"""A finished checkout moved (or renamed) with its results in it has nothing to rerun.

Job inputs inside the checkout (the ablation files, config/reported.yaml) are given relative to the
working directory; as absolute paths they changed with the move, and Snakemake reran every training
("Set of input files has changed since last execution"), then every evaluation and table."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKOUT = ("Snakefile", "workflow", "prvr", "config", "envs", "tests/data/tiny_config.yaml")


def _snakemake(checkout: Path, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "results/ablation.csv", "--cores", "2",
           "--configfile", "tests/data/tiny_config.yaml", *args]
    return subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONHASHSEED": "0"})


def test_a_moved_checkout_reruns_nothing(tmp_path):
    first = tmp_path / "prvr"
    for name in CHECKOUT:
        source, target = REPO / name, first / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    built = _snakemake(first)
    assert built.returncode == 0, built.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "deeper" / "prvr-moved"
    moved.parent.mkdir(parents=True)
    first.rename(moved)
    dry = _snakemake(moved, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
