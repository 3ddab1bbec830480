"""Snakemake step: training curves of one configuration (val SumR and loss terms per epoch, seeds overlaid)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.reporting.curves import curves_figure  # noqa: E402


def main(smk, cfg):
    logs = dict(zip(smk.params.seeds, smk.input.logs))
    print(curves_figure(logs, Path(smk.output.png), f"{smk.wildcards.ablation}: training curves"))


run_step(snakemake, main)
