"""Snakemake step: pretrain the demo's tiny open_clip model on generated frame/caption pairs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.features.pretrain import pretrain_tiny_clip  # noqa: E402


def main(smk, cfg):
    import torch
    torch.set_num_threads(smk.threads)  # the rule's threads: not every core while other jobs run beside it
    pretrain_tiny_clip(cfg.clip.pretrain, Path(smk.output.weights), model_name=cfg.clip.model)


run_step(snakemake, main)
