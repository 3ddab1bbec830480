"""Snakemake step: validate MS-SL's BigFile folder and RoBERTa caption HDF5 against one split, import its videos and captions."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.sources.bigfile_release import import_bigfile_release  # noqa: E402


def main(smk, cfg):
    captions = {smk.wildcards.split: Path(smk.input.captions)}  # one split a job
    print(import_bigfile_release(smk.input.bigfile_dir, smk.input.text_h5, captions, Path(smk.output.video_feats),
                                 Path(smk.output.text_feats), input_dim=cfg.model.input_dim,
                                 text_input_dim=cfg.model.text_input_dim,
                                 video_prefix=cfg.data.released_video_prefix, progress=True))


run_step(snakemake, main)
