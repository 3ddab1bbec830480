"""Snakemake step: decode + CLIP-encode one shard of videos into an HDF5 shard."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import extract_video_shard, shard_video_ids  # noqa: E402


def main(smk, cfg):
    vids = shard_video_ids(Path(smk.input.video_list), int(smk.wildcards.shard), cfg.frames.shard_size)
    weights = Path(smk.input.weights) if smk.input.get("weights") else None
    extract_video_shard(cfg, Path(smk.params.video_dir), vids, weights, Path(smk.output[0]))


run_step(snakemake, main)
