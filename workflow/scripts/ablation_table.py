"""Snakemake step: results/ablation.csv from every configuration's per-seed metrics files."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.config import load_yaml  # noqa: E402
from prvr.reporting.renderings import render_table  # noqa: E402
from prvr.reporting.tables import ablation_table, write_table  # noqa: E402


def main(smk, cfg):
    files = {name: list(smk.input[name]) for name in smk.params.ablations}
    descriptions = {name: str(load_yaml(path).get("description", "")) for name, path in
                    zip(smk.params.ablations, smk.input.ablation_files)}
    reference = "baseline" if "baseline" in files else None  # rows are paired with the baseline by seed
    write_table(ablation_table(files, descriptions, paired_reference=reference), smk.output.table, sources=files)
    render_table(smk.output.table, caption="Ablation (test split, mean over seeds)")


run_step(snakemake, main)
