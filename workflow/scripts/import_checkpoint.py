"""Snakemake step: a release's own checkpoint -> prvr model.pt (prvr.checkpoints.import_checkpoint)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.checkpoints import import_checkpoint  # noqa: E402


def main(smk, cfg):
    print(import_checkpoint(smk.wildcards.release, smk.input.checkpoint, smk.output[0], base_config=cfg))


run_step(snakemake, main)
