"""Snakemake step: per seed of one configuration, the test-split metrics of its trained model, then
its collapse diagnostics (one process for all the seeds)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import collapse_run, evaluate_run  # noqa: E402


def main(smk, cfg):
    inp, out = smk.input, smk.output
    cache = Path(inp.cache) if "cache" in inp.keys() else None
    labels = Path(inp.analysis_labels) if "analysis_labels" in inp.keys() else None
    for model, metrics, collapse in zip(inp.models, out.metrics, out.collapse):
        record = evaluate_run(Path(model), Path(inp.captions), Path(inp.video_feats), Path(inp.text_feats),
                              Path(metrics), device=cfg.eval.device, coverage=Path(inp.coverage), cache=cache)
        print(model, record["metrics"])
        record = collapse_run(Path(model), cfg, smk.params.split, Path(inp.analysis_annotations),
                              Path(inp.analysis_captions), Path(inp.analysis_video_feats),
                              Path(inp.analysis_text_feats), labels, Path(collapse))
        print(model, record["metrics"])


run_step(snakemake, main)
