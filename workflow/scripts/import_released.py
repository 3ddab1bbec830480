"""Snakemake step: validate the authors' released HDF5 features against every split, import them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import import_released_features  # noqa: E402


def main(smk, cfg):
    captions = {Path(p).name.split(".")[0]: Path(p) for p in smk.input.captions}
    print(import_released_features(cfg, captions, Path(smk.output.video_feats), Path(smk.output.text_feats)))


run_step(snakemake, main)
