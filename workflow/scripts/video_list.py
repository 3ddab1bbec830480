"""Snakemake step: a split's video list (video_lists/<split>.txt) that its feature shards read."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import video_list  # noqa: E402


def main(smk, cfg):
    missing = Path(smk.input.missing) if smk.input.get("missing") else None
    own = Path(smk.input.annotations)
    print(video_list([own, *map(Path, smk.input.others)], Path(smk.output[0]), missing, listed=[own]))


run_step(snakemake, main)
