"""Snakemake step: validate the authors' released HDF5 features against one split, import its videos and captions."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import import_released_features  # noqa: E402


def main(smk, cfg):
    captions = {smk.wildcards.split: Path(smk.input.captions)}  # one split a job
    print(import_released_features(cfg, captions, Path(smk.output.video_feats), Path(smk.output.text_feats)))


run_step(snakemake, main)
