"""Benchmark: a full-size rehearsal of a real run through the DAG, on generated features of the real TVR
size in the authors' released layout, so a user knows what a real run needs before starting one.

    .venv/bin/python -m bench.bench_rehearsal [--scale 1.0] [--precision float32] [--eval-precision float32]
                                              [--ablation adaptive] [--device cpu] [--keep DIR]

Writes, in a fresh directory: TVR-shaped annotation files (17,435 train videos with 87,175 captions,
2,179 test videos with 10,895 captions at --scale 1; every video 5 captions, durations 30-150 s,
moments inside them; the real files' shapes, generated ids and words) and random features in the
authors' released layout (FeatureData/tvr_clip_L14.h5: one (n_frames, 768) float16 dataset per video,
40-140 frames; TextData/tvr_clip_L14.h5: one (L, 768) dataset per caption id <vid>#enc#<k>, 8-30 rows),
then runs `snakemake results/ablation.csv results/collapse.csv --config dataset=tvr` with
data.videos=released_features, one configuration (--ablation) and seed, ONE epoch at the paper's shape
(batch 128, hidden 384, 128 frame tokens): import, the float16 cache, training with validation,
evaluation with the collapse diagnostics, and the tables. Prints per rule the jobs, wall and CPU seconds
and peak resident memory (Snakemake's benchmark files: a job's CPU seconds miss up to its last 30 s, its
memory is sampled), the whole run's wall and CPU seconds (every child process), and the disk used.
Random features train nothing: the numbers are costs, not results.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from bench.bench_demo import benchmark_rows, rule_times
from prvr.provenance import machine

REPO = Path(__file__).resolve().parents[1]
TVR = {"train": (17_435, 87_175), "test": (2_179, 10_895)}  # videos, captions of the real files
DIM = 768
WORDS = "a man woman walks sits talks opens door table phone looks at the room kitchen car smiles".split()


def annotation_rows(split: str, n_videos: int, rng: np.random.Generator) -> list[dict]:
    """TVR-layout rows: 5 captions per video, each moment inside its video."""
    rows = []
    for i in range(n_videos):
        vid, duration = f"gen_{split}_{i:05d}", round(float(rng.uniform(30, 150)), 2)
        for _ in range(5):
            start = float(rng.uniform(0, duration - 2))
            end = min(duration, start + float(rng.uniform(2, 30)))
            rows.append({"vid_name": vid, "duration": duration, "ts": [round(start, 2), round(end, 2)],
                         "desc": " ".join(rng.choice(WORDS, int(rng.integers(5, 14)))), "desc_id": len(rows)})
    return rows


def write_release(data: Path, scale: float, seed: int = 0) -> dict[str, int]:
    """Annotations and released-layout features under `data` (= <work>/data/tvr); the counts written."""
    rng = np.random.default_rng(seed)
    (data / "FeatureData").mkdir(parents=True)
    (data / "TextData").mkdir(parents=True)
    counts = {"videos": 0, "captions": 0}
    with h5py.File(data / "FeatureData/tvr_clip_L14.h5", "w") as fv, h5py.File(data / "TextData/tvr_clip_L14.h5", "w") as ft:
        for split, name in (("train", "tvr_train_release.jsonl"), ("test", "tvr_val_release.jsonl")):
            rows = annotation_rows(split, max(2, round(TVR[split][0] * scale)), rng)
            (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
            per_video: dict[str, int] = {}
            for r in tqdm(rows, desc=f"features {split}", unit="caption", mininterval=5):
                k = per_video[r["vid_name"]] = per_video.get(r["vid_name"], -1) + 1
                if k == 0:
                    fv[r["vid_name"]] = rng.standard_normal((int(rng.integers(40, 141)), DIM), dtype=np.float32).astype(np.float16)
                ft[f"{r['vid_name']}#enc#{k}"] = rng.standard_normal((int(rng.integers(8, 31)), DIM), dtype=np.float32).astype(np.float16)
            counts["videos"] += len(per_video)
            counts["captions"] += len(rows)
    return counts


def run_config(args) -> dict:
    return {"seeds": [1], "ablations": [args.ablation],
            "data": {"videos": "released_features", "released_video_h5": "data/tvr/FeatureData/tvr_clip_L14.h5",
                     "released_text_h5": "data/tvr/TextData/tvr_clip_L14.h5"},
            "train": {"epochs": 1, "precision": args.precision, "device": args.device},
            "eval": {"precision": args.eval_precision, "device": args.device}}


def run_dag(work: Path, cores: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every child process) of the rehearsal's DAG run."""
    cmd = [sys.executable, "-m", "snakemake", "results/ablation.csv", "results/collapse.csv", "--snakefile",
           str(REPO / "Snakefile"), "--directory", str(work), "--cores", str(cores),
           "--configfile", str(work / "rehearsal.yaml"), "--config", "dataset=tvr"]
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with open(work / "snakemake.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"bench_rehearsal: the DAG failed (exit {proc.returncode}); see {work / 'snakemake.log'}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def peak_rss(work: Path) -> dict[str, float]:
    """Per rule the largest max_rss (MB) of its benchmark files."""
    peaks: dict[str, float] = {}
    for rule, row in benchmark_rows(work):
        value = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "NA", "-") else 0.0
        peaks[rule] = max(peaks.get(rule, 0.0), value)
    return peaks


def disk_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of TVR's videos and captions (1 = real size)")
    parser.add_argument("--precision", default="float32", help="train.precision")
    parser.add_argument("--eval-precision", default="float32", help="eval.precision")
    parser.add_argument("--ablation", default="adaptive", help="the configuration (config/ablations/<name>.yaml)")
    parser.add_argument("--device", default="cpu", help="train.device and eval.device")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", default=None, help="run in this directory and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="prvr-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    counts = write_release(work / "data/tvr", args.scale)
    written, release_gb = time.perf_counter() - start, disk_gb(work / "data")
    (work / "rehearsal.yaml").write_text(json.dumps(run_config(args)))
    load = os.getloadavg()[0]
    wall, cpu = run_dag(work, args.cores)
    m = machine()
    print(f"machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no ISA flags read'}), {m['cpu_cores']} CPUs, "
          f"GPU {m['gpu'] or 'none'}, torch {m['torch']}; load {load:.2f} before the run; scale {args.scale}: "
          f"{counts['videos']} videos, {counts['captions']} captions; {args.ablation}, 1 seed, 1 epoch, train "
          f"{args.precision}, eval {args.eval_precision} on {args.device}; in {work}\n")
    print("| rule | jobs | wall s | CPU s | peak RSS GB |\n|---|---|---|---|---|")
    rss = peak_rss(work)
    for rule, (jobs, secs, rule_cpu) in sorted(rule_times(work).items(), key=lambda kv: -kv[1][1]):
        print(f"| {rule} | {int(jobs)} | {secs:.1f} | {rule_cpu:.1f} | {rss.get(rule, 0.0) / 1024:.2f} |")
    print(f"| **whole DAG** | | **{wall:.1f}** | {cpu:.1f} | |\n")
    print(f"writing the generated release: {written:.1f} s, {release_gb:.2f} GB; disk used by the run "
          f"(results/ and the rest, the release excluded): {disk_gb(work) - release_gb:.2f} GB\n")
    print((work / "results/ablation.csv").read_text())


if __name__ == "__main__":
    main()
