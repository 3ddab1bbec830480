"""Snakemake step: collapse metrics of the CLIP input features (no model); a trained model's are written
by its evaluate step (workflow/scripts/evaluate.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.stages import collapse_run  # noqa: E402


def main(smk, cfg):
    inp = smk.input
    model = Path(inp.model) if "model" in inp.keys() else None
    labels = Path(inp.labels) if "labels" in inp.keys() else None
    record = collapse_run(model, cfg, smk.params.split, Path(inp.annotations), Path(inp.captions),
                          Path(inp.video_feats), Path(inp.text_feats), labels, Path(smk.output[0]))
    print(record["metrics"])


run_step(snakemake, main)
