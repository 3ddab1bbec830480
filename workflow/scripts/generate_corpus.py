"""Snakemake step: generate the demo corpus (videos + annotations)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.demo.synthetic import generate_corpus  # noqa: E402


def main(smk, cfg):
    out_dir = Path(smk.output.videos).parent
    generate_corpus(cfg.corpus, out_dir)


run_step(snakemake, main)
