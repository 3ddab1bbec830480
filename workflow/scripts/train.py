"""Snakemake step: train one (configuration, seed)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.config_sources import ablation_config  # noqa: E402
from prvr.stages import train_run  # noqa: E402
from prvr.training.trainer import TrainData  # noqa: E402


def main(smk, cfg):
    cfg = ablation_config(cfg, Path(smk.input.ablation))
    inp = smk.input
    cache = Path(inp.cache) if "cache" in inp.keys() else None
    teacher = {k: Path(inp[k]) for k in ("teacher_video", "teacher_text") if k in inp.keys()}  # DL-DKD's own
    data = TrainData(Path(inp.train_captions), Path(inp.val_captions), Path(inp.video_feats), Path(inp.text_feats),
                     feature_cache=cache, **teacher)
    inputs = {k: inp[k] for k in ("ablation", "train_captions", "val_captions", "video_feats", "text_feats",
                                  *teacher)}
    train_run(cfg, int(smk.wildcards.seed), data, Path(smk.output.model).parent, inputs)


run_step(snakemake, main)
