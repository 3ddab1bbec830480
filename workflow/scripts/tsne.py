"""Snakemake step: t-SNE figure of a few videos' frame tokens and queries (model, or CLIP input)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import tsne_run  # noqa: E402


def main(smk, cfg):
    inp = smk.input
    model = Path(inp.model) if "model" in inp.keys() else None
    labels = Path(inp.labels) if "labels" in inp.keys() else None
    name = smk.wildcards.ablation
    tsne_run(model, cfg, smk.params.split, Path(inp.annotations), Path(inp.captions), Path(inp.video_feats),
             Path(inp.text_feats), labels, Path(smk.output[0]), title=f"{name} ({smk.params.split} split)")


run_step(snakemake, main)
