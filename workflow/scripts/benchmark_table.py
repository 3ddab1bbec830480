"""Snakemake step: results/benchmarks.csv (+ .md, .tex), the rule benchmarks of the run (wall s, peak RSS, CPU s)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_text  # noqa: E402
from prvr.reporting.main_table import benchmark_table  # noqa: E402
from prvr.reporting.renderings import render_table  # noqa: E402


def main(smk, cfg):
    frame = benchmark_table({job: smk.input[job] for job in smk.input.keys()})
    write_text(smk.output.table, frame.to_csv(index=False, lineterminator="\n"))
    render_table(smk.output.table, caption="Rule benchmarks of this run (Snakemake benchmark files)")


run_step(snakemake, main)
