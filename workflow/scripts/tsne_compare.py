"""Snakemake step: the paper's t-SNE figure, the baseline's rows beside the full method's on the same
videos (prvr.stages.tsne_compare_run)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.reporting.figures import require_analysis_extra  # noqa: E402
from prvr.stages import tsne_compare_run  # noqa: E402


def main(smk, cfg):
    require_analysis_extra()
    inp = smk.input
    labels = Path(inp.labels) if "labels" in inp.keys() else None
    title = f"{' vs '.join(smk.params.rows)} ({smk.params.split} split, seed {cfg.seeds[0]})"
    chosen = tsne_compare_run(dict(zip(smk.params.rows, map(Path, smk.input.models))), cfg, smk.params.split,
                              Path(inp.annotations), Path(inp.captions), Path(inp.video_feats),
                              Path(inp.text_feats), labels, Path(smk.output.png), title)
    print(chosen)


run_step(snakemake, main)
