"""Snakemake step: DL-DKD's own CLIP teacher files, validated against the train captions and imported."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.sources.teacher_release import import_teacher  # noqa: E402


def main(smk, cfg):
    inp, out = smk.input, smk.output
    print(import_teacher(inp.video_h5, inp.text_h5, {"train": Path(inp.captions)}, Path(out.video), Path(out.text)))


run_step(snakemake, main)
