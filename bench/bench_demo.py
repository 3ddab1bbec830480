"""Benchmark: wall time of the whole demo DAG (`snakemake --cores N all`) in a fresh directory.

    .venv/bin/python -m bench.bench_demo [--cores 8] [--configfile extra.yaml] [--keep DIR]

Runs the repository's Snakefile with the default config (plus any --configfile) in an empty
working directory, so nothing is reused, and prints a markdown table: the total wall time, then
each rule's summed seconds and CPU seconds from Snakemake's `benchmark:` files, the CPU seconds of the
whole run (every process Snakemake started, itself included: getrusage of the children), and the
resulting ablation table. Snakemake samples a job's CPU time every 0.5 s for its first 30 s and every
30 s after that, so a rule's CPU seconds miss up to the last 30 s of each long job; the whole run's
figure does not. Installs are not included (the venv must exist).
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from prvr.provenance import machine

REPO = Path(__file__).resolve().parents[1]


def run_dag(workdir: Path, cores: int, configfiles: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of every child process) of the DAG run."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "all"]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def benchmark_rows(workdir: Path):
    """(rule, row) of every Snakemake benchmark file under workdir/benchmarks (row: its first line's fields)."""
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "benchmarks").parts[0].removesuffix(".tsv")
        yield rule, next(csv.DictReader(tsv.open(), delimiter="\t"))


def rule_times(workdir: Path) -> dict[str, list[float]]:
    """Per rule: [jobs, wall seconds, cpu seconds] summed over its benchmark files."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for rule, row in benchmark_rows(workdir):
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
    load = os.getloadavg()[0]
    wall, total_cpu = run_dag(workdir, args.cores, [str(Path(c).resolve()) for c in args.configfile])
    m = machine()
    print(f"machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no ISA flags read'}; torch dispatches to "
          f"{m['cpu_capability']}), {m['cpu_cores']} CPUs, GPU {m['gpu'] or 'none'}, torch {m['torch']}; "
          f"1-minute load average {load:.2f} before the run; `snakemake --cores {args.cores} all` in {workdir}\n")
    print("| step | jobs | wall s (summed over jobs) | CPU s |\n|---|---|---|---|")
    for rule, (jobs, secs, cpu) in sorted(rule_times(workdir).items(), key=lambda kv: -kv[1][1]):
        print(f"| {rule} | {int(jobs)} | {secs:.1f} | {cpu:.1f} |")
    print(f"| **total wall time** (CPU s: the whole run) | | **{wall:.1f}** ({wall / 60:.1f} min) | {total_cpu:.1f} |\n")
    print((workdir / "results/ablation.csv").read_text())


if __name__ == "__main__":
    main()
