"""Snakemake step: a configuration's parameter count, from its trained model.pt (model + loss-owned head)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_json  # noqa: E402
from prvr.reporting.main_table import count_parameters  # noqa: E402


def main(smk, cfg):
    model, loss = count_parameters(smk.input.model)
    write_json(smk.output[0], {"model": model, "loss": loss, "checkpoint": str(smk.input.model)})
    print(f"{smk.wildcards.ablation}: {model} model parameters, {loss} owned by the loss")


run_step(snakemake, main)
