"""Snakemake step: how often search finds each test caption's video and moment (prvr.search.measure)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_json  # noqa: E402
from prvr.search.measure import measure, read_annotations  # noqa: E402
from prvr.search.searcher import Searcher  # noqa: E402


def main(smk, cfg):
    result = measure(Searcher(smk.input.index), read_annotations(smk.input.annotations), (0.5,))
    write_json(smk.output[0], {**result, "index": str(smk.input.index)})
    print(result)


run_step(snakemake, main)
