"""What a finished checkout reruns: nothing when it is moved (or renamed) with its results in it, and
only the test split's jobs when a test caption is edited.

Job inputs inside the checkout (the ablation files, config/reported.yaml) are given relative to the
working directory; as absolute paths they changed with the move, and Snakemake reran every training
("Set of input files has changed since last execution"), then every evaluation and table. Every split
has its own annotation table, video list, caption file and feature stores, so an edited test caption
never reaches training (it did while all splits shared one text store)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKOUT = ("Snakefile", "workflow", "prvr", "config", "envs", "tests/data/tiny_config.yaml")


def _snakemake(checkout: Path, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "results/ablation.csv", "--cores", "2",
           "--configfile", "tests/data/tiny_config.yaml", *args]
    return subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONHASHSEED": "0"})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A checkout with the tiny DAG's results/ablation.csv built."""
    first = tmp_path_factory.mktemp("built") / "prvr"
    for name in CHECKOUT:
        source, target = REPO / name, first / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    built = _snakemake(first)
    assert built.returncode == 0, built.stderr[-3000:]
    return first


def test_a_moved_checkout_reruns_nothing(built, tmp_path):
    first = tmp_path / "prvr"
    shutil.copytree(built, first, symlinks=True)
    moved = tmp_path / "elsewhere" / "deeper" / "prvr-moved"
    moved.parent.mkdir(parents=True)
    first.rename(moved)
    dry = _snakemake(moved, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


def test_an_edited_test_caption_retrains_nothing(built, tmp_path):
    work = tmp_path / "prvr"
    shutil.copytree(built, work, symlinks=True)
    data = work / "results/demo"
    model = data / "runs/baseline/seed1/model.pt"
    kept = [model, data / "features/text/train.h5", data / "features/video/train.h5", data / "features/video/test.h5"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept}
    table = data / "annotations/test.jsonl"
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    rows[0]["desc"] = "A caption edited by hand."
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _snakemake(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", proc.stdout + proc.stderr, re.M))
    assert {"caption_file", "text_features", "evaluate", "ablation_table"} <= ran, ran
    assert not ran & {"train", "video_features_shard", "merge_video_features"}, ran
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == before
    assert (data / "features/text/test.h5").stat().st_mtime_ns > before[model][0]  # re-encoded after training
    assert "A caption edited by hand." in (data / "captions/test.caption.txt").read_text()
