"""Snakemake step: CLIP token features of one split's captions."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import extract_text  # noqa: E402


def main(smk, cfg):
    weights = Path(smk.input.weights) if smk.input.get("weights") else None
    extract_text(cfg, [Path(smk.input.captions)], weights, Path(smk.output[0]))


run_step(snakemake, main)
