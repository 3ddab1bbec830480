"""profiles/slurm on a real one-node SLURM cluster on localhost (issue 4).

tests/slurm/local_cluster.py starts munged, slurmctld and slurmd from a temporary directory. The tiny
configuration then runs through `--profile profiles/slurm` while a local run of it goes on beside it; the
training job is cancelled once with scancel while it runs. Checks: the SLURM run retries it and finishes
with the local run's table and metrics; a cuda training run reaches sbatch as --gpus=1 (read back with
scontrol); nothing started here is left running. About 2.5 minutes on 2 cores. Needs root, 8 GB of memory
(the profile's requests) and Debian's slurm-wlm and munge (.ci/slurm-setup.sh installs them); skipped
without those packages or without root. The dry-run test needs none of it.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests/data/tiny_config.yaml"
PROFILE = REPO / "profiles/slurm"
sys.path.insert(0, str(REPO / "tests/slurm"))
import local_cluster  # noqa: E402

RUN_DIR = "results/demo/runs/baseline/seed1"
# The plugin polls after 1 s instead of 40 s; no slurmdbd here, so job states come from squeue.
SLURM_ARGS = ["--profile", str(PROFILE), "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "1"]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S+/rule_(\w+?)/")


# One training job in the whole DAG (the main table's baselines are trained by tests/test_workflow.py), so
# the job cancelled below is the one whose retry the test follows.
ONE_TRAINING = ("--config", "main_table=[baseline]")


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(TINY), *args]


def slurm_snakemake(cluster, workdir: Path, log: Path, *args: str, limit: int = 420) -> subprocess.Popen:
    """Snakemake under `timeout`: SIGINT makes it cancel its jobs and exit (SIGTERM would wait for them)."""
    cmd = ["timeout", "-s", "INT", "-k", "30", str(limit), *snakemake_cmd(workdir, *SLURM_ARGS, *args)]
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**cluster.env, "PYTHONHASHSEED": "0"})


def submissions(log_text: str, rule: str) -> list[str]:
    return [job for job, r in SUBMITTED.findall(log_text) if r == rule]


def show_job(cluster, job_id: str) -> str:
    return cluster.run("scontrol", "show", "job", job_id)


def failure(what: str, log: Path) -> str:
    return f"{what}; last lines of {log}:\n" + local_cluster.tail(log, 60)


def test_profile_sizes_jobs_and_requests_gpus_from_the_config(tmp_path):
    """Dry run: the profile's per-rule resources and the rules' GPU requests, with no cluster needed."""
    cuda = ['train={"device": "cuda"}', 'clip={"device": "cuda"}']
    # the feature shards are planned from the video lists (a checkpoint per split): make them first, locally
    lists = [f"results/demo/video_lists/{split}.txt" for split in ("train", "val", "test")]
    listing = subprocess.run(snakemake_cmd(tmp_path, "--cores", "2", *lists), capture_output=True,
                             text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr[-2000:]
    proc = subprocess.run(snakemake_cmd(tmp_path, "--profile", str(PROFILE), "-n", "--config", *cuda),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resources = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, re.M))
    assert {"train", "video_features_shard", "text_features", "evaluate"} <= resources.keys()
    for rule in ("train", "video_features_shard", "text_features"):
        assert "gpu=1" in resources[rule], (rule, resources[rule])
    assert "gpu=1" not in resources["evaluate"] and "runtime=720" in resources["train"]  # eval.device: cpu
    assert "mem_mb=8000" in resources["video_features_shard"]
    cpu = subprocess.run(snakemake_cmd(tmp_path, "--profile", str(PROFILE), "-n"), capture_output=True, text=True,
                         timeout=300)
    assert cpu.returncode == 0 and "gpu=1" not in cpu.stdout


@pytest.fixture(scope="module")
def cluster():
    missing = local_cluster.missing_binaries()
    if missing:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)}); .ci/slurm-setup.sh installs them")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (munged runs as the munge user, slurmd as root)")
    started = local_cluster.LocalSlurm.start()
    yield started
    started.stop()
    started.remove()


@dataclass
class Runs:
    local: Path
    slurm: Path
    slurm_log: str
    cancelled: str           # SLURM id of the training job cancelled with scancel
    train_jobs: dict         # SLURM id -> `scontrol show job` text, for every training submission


def cancel_first_running_train_job(cluster, proc: subprocess.Popen) -> str:
    """Wait until a training job runs, scancel it, return its id ('' if the run ended first)."""
    while proc.poll() is None:
        for line in cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k", check=False).splitlines():
            job_id, comment = line.split("|", 1)
            if comment.startswith("rule_train"):
                cluster.run("scancel", job_id, check=False)  # a job that just ended: the asserts say so
                return job_id
        time.sleep(0.5)
    return ""


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny DAG through SLURM (its training job cancelled once) and locally, at the same time."""
    local, slurm = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("slurm")
    with (local / "run.log").open("w") as out:
        local_proc = subprocess.Popen(snakemake_cmd(local, "--cores", "2", *ONE_TRAINING), stdout=out,
                                      stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
    slurm_proc = slurm_snakemake(cluster, slurm, slurm / "run.log", *ONE_TRAINING)
    try:
        cancelled = cancel_first_running_train_job(cluster, slurm_proc)
        slurm_rc, local_rc = slurm_proc.wait(), local_proc.wait(timeout=600)
    finally:
        for proc in (slurm_proc, local_proc):  # only after an error: SIGINT makes both cancel their jobs
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    assert slurm_rc == 0, failure("the SLURM run failed", slurm / "run.log")
    assert local_rc == 0, failure("the local run failed", local / "run.log")
    log_text = (slurm / "run.log").read_text()
    train_jobs = {job: show_job(cluster, job) for job in submissions(log_text, "train")}  # before MinJobAge ends
    return Runs(local, slurm, log_text, cancelled, train_jobs)


def test_every_step_ran_as_a_slurm_job(runs):
    submitted_rules = {rule for _, rule in SUBMITTED.findall(runs.slurm_log)}
    assert {"generate_corpus", "video_features_shard", "text_features", "train", "evaluate",
            "collapse_reference", "tsne"} <= submitted_rules
    assert re.findall(r"^localrule (\w+):", runs.slurm_log, re.M) == ["default"]  # the target rule, no work


def test_slurm_run_equals_local_run(runs):
    for table in ("results/ablation.csv", "results/collapse.csv"):
        assert (runs.slurm / table).read_bytes() == (runs.local / table).read_bytes(), table
    local = json.loads((runs.local / RUN_DIR / "metrics.json").read_text())
    slurm = json.loads((runs.slurm / RUN_DIR / "metrics.json").read_text())
    for key in ("metrics", "n_queries", "n_videos"):
        assert slurm[key] == local[key], key
    # the same feature files (sha256) and the same training history and weights
    inputs = [{k: v for k, v in run["provenance"]["inputs"].items() if k != "model"} for run in (slurm, local)]
    assert inputs[0] == inputs[1]
    train_log = f"{RUN_DIR}/train_log.jsonl"
    assert (runs.slurm / train_log).read_text() == (runs.local / train_log).read_text()
    # model.pt is compared by its tensors: torch.save names the zip's root after the (random) temp file
    weights = [torch.load(run / RUN_DIR / "model.pt", map_location="cpu", weights_only=False)["model"]
               for run in (runs.slurm, runs.local)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_cancelled_training_job_is_retried(runs):
    assert runs.cancelled, "no training job was seen running, so none was cancelled"
    assert f"SLURM-job '{runs.cancelled}' failed, SLURM status is: 'CANCELLED'" in runs.slurm_log
    jobs = list(runs.train_jobs)
    assert jobs[0] == runs.cancelled and len(jobs) == 2, jobs
    assert "JobState=CANCELLED" in runs.train_jobs[jobs[0]]
    assert "JobState=COMPLETED" in runs.train_jobs[jobs[1]]
    memory = [int(re.search(r"MinMemoryNode=(\d+)M", runs.train_jobs[j]).group(1)) for j in jobs]
    assert memory[1] == 2 * memory[0], memory  # the profile's mem_mb grows with the attempt


def test_training_gpu_request_reaches_sbatch(cluster, runs):
    """A cuda training job asks SLURM for one GPU as --gpus=1 (the test node's GPU is a name only)."""
    log = runs.slurm / "gpu.log"
    proc = slurm_snakemake(cluster, runs.slurm, log, "--config", 'train={"device": "cuda"}', "--retries", "0",
                           f"{RUN_DIR}/model.pt", limit=240)
    while proc.poll() is None and not submissions(log.read_text(), "train"):
        time.sleep(0.5)
    jobs = submissions(log.read_text(), "train")
    assert jobs, failure("no training job was submitted", log)
    job = show_job(cluster, jobs[0])
    proc.send_signal(signal.SIGINT)  # what SLURM was asked for is known; on SIGINT snakemake cancels its job
    proc.wait(120)
    assert re.search(r"TresPerJob=gres[:/]gpu:1\b", job), job
    assert "TresPerNode" not in job, "a --gres was submitted besides --gpus"
    deadline = time.monotonic() + 30
    while jobs[0] in cluster.job_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs[0] not in cluster.job_ids(), "the job outlived snakemake"


def test_cluster_stops_and_leaves_nothing_running(cluster):
    daemons = [proc.pid for proc in cluster.procs.values()]
    cluster.stop()
    assert cluster.leftover_processes() == []
    for pid in daemons:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
