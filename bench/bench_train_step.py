"""Benchmark: one full training step per ablation configuration at the real TVR shape.

    .venv/bin/python -m bench.bench_train_step [--threads 2] [--steps 3] [--ablations baseline adaptive ...]

Shape (issue 3, the authors' TVR setting): a batch of 128 videos x 128 frame tokens, 640 queries
of up to 34 tokens, feature size 768, hidden 384, clip tokens 32 (merging 128 -> 80 -> 52 -> 32,
adaptive segment choices 32/20/12/8/5). A step = model forward + every loss term + backward +
AdamW update, on random inputs (the timing does not depend on their values). Prints a markdown
table: median and min seconds per step over --steps timed steps (after one warm-up step), and
the peak resident memory of the process.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from prvr.config import Config, merge
from prvr.losses import create_loss
from prvr.models import create_model
from prvr.stages import ablation_config

REPO = Path(__file__).resolve().parents[1]
REAL_SHAPE = {
    "model": {"input_dim": 768, "hidden": 384, "heads": 4, "frame_tokens": 128, "clip_tokens": 32,
              "merging": {"stages": [80, 52, 32]}},
    "loss": {"cbva": {"adaptive": {"segment_choices": [32, 20, 12, 8, 5]}}},
}


def real_batch(n_videos=128, n_queries=640, max_len=34, dim=768, frames=128, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, max_len + 1, (n_queries,), generator=g)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (Q, L)
    query_feats = torch.randn(n_queries, max_len, dim, generator=g) * mask[..., None]
    eot = query_feats[torch.arange(n_queries), lengths - 1]  # (Q, D)
    owner = torch.arange(n_queries) % n_videos  # 5 captions per video, as TVR
    return {"frame_feats": torch.randn(n_videos, frames, dim, generator=g), "query_feats": query_feats,
            "query_mask": mask, "query_to_video": owner, "query_eot": eot}


def time_steps(cfg: Config, batch: dict, steps: int) -> list[float]:
    model = create_model(cfg.model)
    loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden)
    optimizer = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        out = model(frame_feats=batch["frame_feats"], query_feats=batch["query_feats"], query_mask=batch["query_mask"])
        terms = loss_fn(**out, **{k: v for k, v in batch.items() if k not in out}, epoch=30, generator=generator)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i > 0:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ablations", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.ablations or sorted(p.stem for p in (REPO / "config/ablations").glob("*.yaml"))
    base = merge(Config(), REAL_SHAPE)
    batch = real_batch()
    print(f"torch {torch.__version__}, {args.threads} threads; 128 videos x 128 x 768, 640 queries <= 34 tokens\n")
    print("| configuration | median s/step | min s/step | peak RSS GB |\n|---|---|---|---|")
    for name in names:
        cfg = ablation_config(base, REPO / f"config/ablations/{name}.yaml")
        times = time_steps(cfg, batch, args.steps)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
