"""Snakemake step: results/collapse.csv, the CLIP-input reference row then one row per configuration."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.config import load_yaml  # noqa: E402
from prvr.reporting.renderings import render_table  # noqa: E402
from prvr.reporting.tables import COLLAPSE_METRICS, ablation_table, write_table  # noqa: E402


def main(smk, cfg):
    files = {"clip_input": [smk.input.reference], **{name: list(smk.input[name]) for name in smk.params.ablations}}
    descriptions = {"clip_input": "CLIP input features and sentence vectors, no training (reference)"}
    descriptions.update({name: str(load_yaml(path).get("description", "")) for name, path in
                         zip(smk.params.ablations, smk.input.ablation_files)})
    table = ablation_table(files, descriptions, metrics=COLLAPSE_METRICS, digits=3)
    write_table(table, smk.output.table, sources=files, metrics=COLLAPSE_METRICS)
    render_table(smk.output.table, caption="Semantic-collapse diagnostics (mean over seeds)")


run_step(snakemake, main)
