"""Snakemake step (local): download the dataset's video archive (resumable, checksum) and extract it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import fetch_archive  # noqa: E402


def main(smk, cfg):
    print(fetch_archive(cfg, Path(smk.output.done)))


run_step(snakemake, main)
