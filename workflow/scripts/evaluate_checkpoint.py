"""Snakemake step: an imported release checkpoint's test-split metrics (the run's tie rule)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import evaluate_run  # noqa: E402


def main(smk, cfg):
    inp = smk.input
    record = evaluate_run(Path(inp.model), Path(inp.captions), Path(inp.video_feats), Path(inp.text_feats),
                          Path(smk.output[0]), device=cfg.eval.device, coverage=Path(inp.coverage))
    print(inp.model, record["metrics"])


run_step(snakemake, main)
