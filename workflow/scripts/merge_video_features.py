"""Snakemake step: merge HDF5 shards into one video feature store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.store.feature_store import merge_stores  # noqa: E402


def main(smk, cfg):
    merge_stores([Path(p) for p in smk.input], Path(smk.output[0]))


run_step(snakemake, main)
