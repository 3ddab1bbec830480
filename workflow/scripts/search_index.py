"""Snakemake step: the test videos indexed with the full method's model (prvr.search.index_videos)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.search import index_videos  # noqa: E402


def main(smk, cfg):
    weights = smk.input.weights if "weights" in smk.input.keys() else None
    done = index_videos(smk.input.videos, smk.input.model, smk.output[0], clip_weights=weights)
    print({k: v for k, v in done.items() if k != "broken"}, "broken:", done["broken"])


run_step(snakemake, main)
