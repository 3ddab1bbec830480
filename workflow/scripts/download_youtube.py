"""Snakemake step (local): fetch a split's YouTube videos; ids that fail go to missing_videos/<split>.tsv."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import fetch_youtube_videos  # noqa: E402


def main(smk, cfg):
    print(fetch_youtube_videos(cfg, [Path(smk.input.annotations)], Path(smk.output.missing),
                               Path(smk.output.done)))


run_step(snakemake, main)
