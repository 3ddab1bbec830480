"""config train_jobs: one train job per configuration (all seeds in one process) gives every seed the
weights and training log a job per seed gives it, and switching between the two reruns nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests/data/tiny_config.yaml"
RUNS = "results/demo/runs/adaptive"
TARGETS = [f"{RUNS}/seed{seed}/model.pt" for seed in (1, 2)]


def snakemake(workdir, mode, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(TINY), "--cores", "2", *args, "--config", "seeds=[1,2]", f"train_jobs={mode}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def trained(workdir: Path) -> dict:
    """Every seed's weights and per-epoch training log (losses and val metrics, without timings)."""
    out = {}
    for seed in (1, 2):
        run = workdir / RUNS / f"seed{seed}"
        log = [{k: v for k, v in json.loads(line).items() if k in ("epoch", "loss", "val")}
               for line in (run / "train_log.jsonl").read_text().splitlines()]
        out[seed] = (torch.load(run / "model.pt", map_location="cpu", weights_only=False), log)
    return out


def same_weights(a: dict, b: dict) -> bool:
    """model.pt files with the same weights and selected epoch (their config records train_jobs too)."""
    weights = a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    return weights and (a["seed"], a["epoch"]) == (b["seed"], b["epoch"])


def test_one_job_per_configuration_trains_every_seed_as_separate_jobs_do(tmp_path):
    out = snakemake(tmp_path, "per_seed", *TARGETS)
    assert (tmp_path / "logs/train/adaptive/seed1.log").exists() and (tmp_path / "logs/train/adaptive/seed2.log").exists()
    per_seed = trained(tmp_path)
    first = next(iter(per_seed[1][0]["model"]))
    assert not torch.equal(per_seed[1][0]["model"][first], per_seed[2][0]["model"][first])  # the seeds differ

    shutil.rmtree(tmp_path / RUNS)  # checkpoints too: nothing to resume from
    out = snakemake(tmp_path, "per_configuration", *TARGETS)
    log = (tmp_path / "logs/train/adaptive.log").read_text()
    assert "== adaptive seed 1 ==" in log and "== adaptive seed 2 ==" in log
    assert out.count("rule train:") == 1 and (tmp_path / "benchmarks/train/adaptive.tsv").exists()
    together = trained(tmp_path)
    for seed in (1, 2):
        assert same_weights(per_seed[seed][0], together[seed][0]), f"seed {seed}: other weights"
        assert per_seed[seed][1] == together[seed][1], f"seed {seed}: other training log"

    for mode in ("per_seed", "per_configuration"):  # the mode is not a training setting: nothing reruns
        assert "Nothing to be done" in snakemake(tmp_path, mode, "-n", *TARGETS)
