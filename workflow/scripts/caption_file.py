"""Snakemake step: TVR-layout annotation jsonl -> MS-SL caption file (+ how many queries had no video)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_json  # noqa: E402
from prvr.stages import write_captions  # noqa: E402


def main(smk, cfg):
    missing = Path(smk.input.missing) if smk.input.get("missing") else None
    counts = write_captions(Path(smk.input.annotations), Path(smk.output.captions), missing)
    write_json(Path(smk.output.coverage), counts)
    print(f"{counts['queries']} captions -> {smk.output.captions}; "
          f"{counts['queries_without_video']} left out (video could not be fetched)")


run_step(snakemake, main)
