"""Snakemake step: train one configuration, for the job's seed (train_jobs: per_seed) or for every
seed in turn (per_configuration: one process, each seed seeded afresh, so the same weights)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.config_sources import ablation_config  # noqa: E402
from prvr.stages import train_run  # noqa: E402
from prvr.training.trainer import TrainData  # noqa: E402


def job_seeds(smk, cfg) -> list[int]:
    """The seeds this job trains, in the order of its outputs."""
    return [int(smk.wildcards.seed)] if "seed" in smk.wildcards.keys() else list(cfg.seeds)


def main(smk, cfg):
    cfg = ablation_config(cfg, Path(smk.input.ablation))
    inp = smk.input
    fields = {"cache": "feature_cache", "val_cache": "val_feature_cache"}  # input name -> TrainData field
    optional = {fields.get(name, name): Path(inp[name]) for name in ("cache", "val_cache", "val_video_feats",
                                                                     "val_text_feats", "teacher_video", "teacher_text")
                if name in inp.keys()}  # teacher_*: DL-DKD's own teacher stores
    data = TrainData(Path(inp.train_captions), Path(inp.val_captions), Path(inp.video_feats), Path(inp.text_feats),
                     **optional)
    inputs = {k: inp[k] for k in ("ablation", "train_captions", "val_captions", "video_feats", "text_feats",
                                  "val_video_feats", "val_text_feats", "teacher_video", "teacher_text") if k in inp.keys()}
    models = [smk.output.model] if isinstance(smk.output.model, str) else list(smk.output.model)
    for seed, model in zip(job_seeds(smk, cfg), models, strict=True):
        print(f"== {smk.wildcards.ablation} seed {seed} ==")
        train_run(cfg, seed, data, Path(model).parent, inputs)


run_step(snakemake, main)
