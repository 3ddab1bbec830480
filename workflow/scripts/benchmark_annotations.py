"""Snakemake step: the benchmark's own annotation files -> annotations/{split}.jsonl, one split a job."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import benchmark_tables  # noqa: E402


def main(smk, cfg):
    out_dir = Path(smk.output.annotations).parent.parent
    print(benchmark_tables(cfg, out_dir, (smk.wildcards.split,)))


run_step(snakemake, main)
