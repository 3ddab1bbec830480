"""Snakemake step: per seed of one configuration, the test-split metrics of its trained model and its
collapse diagnostics (one process for all the seeds). Where analysis.split is the evaluated split (the
default, test) the diagnostics are computed from the evaluation's own encodings (one encoding per
model: stages.evaluate_run's collapse); otherwise the analysis split is encoded on its own
(stages.collapse_run)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import CollapseOutput, collapse_run, evaluate_run  # noqa: E402


def main(smk, cfg):
    inp, out = smk.input, smk.output
    cache = Path(inp.cache) if "cache" in inp.keys() else None
    labels = Path(inp.analysis_labels) if "analysis_labels" in inp.keys() else None
    shared = Path(inp.analysis_captions) == Path(inp.captions)  # the analysis split is the evaluated one
    for model, metrics, collapse in zip(inp.models, out.metrics, out.collapse):
        target = CollapseOutput(Path(inp.analysis_annotations), labels, Path(collapse)) if shared else None
        record = evaluate_run(Path(model), Path(inp.captions), Path(inp.video_feats), Path(inp.text_feats),
                              Path(metrics), device=cfg.eval.device, coverage=Path(inp.coverage), cache=cache,
                              collapse=target)
        print(model, record["metrics"])
        if not shared:
            record = collapse_run(Path(model), cfg, smk.params.split, Path(inp.analysis_annotations),
                                  Path(inp.analysis_captions), Path(inp.analysis_video_feats),
                                  Path(inp.analysis_text_feats), labels, Path(collapse))
            print(model, record["metrics"])


run_step(snakemake, main)
