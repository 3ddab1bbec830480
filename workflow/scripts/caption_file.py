"""Snakemake step: TVR-layout annotation jsonl -> MS-SL caption file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import write_captions  # noqa: E402


def main(smk, cfg):
    n = write_captions(Path(smk.input[0]), Path(smk.output[0]))
    print(f"{n} captions -> {smk.output[0]}")


run_step(snakemake, main)
