"""Benchmark: wall time of the whole demo DAG (`snakemake --cores N all`) in a fresh directory.

    .venv/bin/python -m bench.bench_demo [--cores 8] [--configfile extra.yaml] [--keep DIR]

Runs the repository's Snakefile with the default config (plus any --configfile) in an empty
working directory, so nothing is reused, and prints a markdown table: the total wall time, then
each rule's summed seconds and CPU seconds from Snakemake's `benchmark:` files, and the resulting
ablation table. Installs are not included (the venv must exist).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_dag(workdir: Path, cores: int, configfiles: list[str]) -> float:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "all"]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rule_times(workdir: Path) -> dict[str, list[float]]:
    """Per rule: [jobs, wall seconds, cpu seconds] summed over its benchmark files."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        rel = tsv.relative_to(workdir / "benchmarks")
        rule = rel.parts[0].removesuffix(".tsv")
        row = next(csv.DictReader(tsv.open(), delimiter="\t"))
        totals[rule][0] += 1
        totals[rule][1] += float(row["s"])
        totals[rule][2] += float(row["cpu_time"] or 0.0)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument("--keep", default=None, help="run in this directory and keep it")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="prvr-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    wall = run_dag(workdir, args.cores, [str(Path(c).resolve()) for c in args.configfile])
    print(f"machine: {os.cpu_count()} CPUs; `snakemake --cores {args.cores} all` in {workdir}\n")
    print("| step | jobs | wall s (summed over jobs) | CPU s |\n|---|---|---|---|")
    for rule, (jobs, secs, cpu) in sorted(rule_times(workdir).items(), key=lambda kv: -kv[1][1]):
        print(f"| {rule} | {int(jobs)} | {secs:.1f} | {cpu:.1f} |")
    print(f"| **total wall time** | | **{wall:.1f}** | |\n")
    print((workdir / "results/ablation.csv").read_text())


if __name__ == "__main__":
    main()
