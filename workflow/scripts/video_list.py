"""Snakemake step: the dataset's one video list (videos.txt) that every feature shard reads."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import video_list  # noqa: E402


def main(smk, cfg):
    missing = Path(smk.input.missing) if smk.input.get("missing") else None
    print(video_list([Path(p) for p in smk.input.annotations], Path(smk.output[0]), missing))


run_step(snakemake, main)
