"""Benchmark: one full training step per ablation configuration at the real TVR shape, with the
step's achieved matmul FLOP/s against a matmul peak measured in the same run.

    .venv/bin/python -m bench.bench_train_step [--threads 2] [--steps 3] [--warmup 3] [--device cpu]
                                               [--model gmmformer_v2] [--ablations baseline adaptive ...]
                                               [--precision float32 bfloat16] [--reference-step 35.2]

Shape (the authors' TVR setting): a batch of 128 videos x 128 frame tokens, 640 queries of up to 34
tokens, feature size 768, hidden 384, clip tokens 32 (merging 128 -> 80 -> 52 -> 32, adaptive segment
choices 32/20/12/8/5). A step = model forward + every loss term + backward + the configured optimiser
update (train.optimizer, default the authors' BertAdam), on random inputs (the timing does not
depend on their values). Per configuration: median and fastest seconds over --steps timed steps after
--warmup steps (the first steps pay for fresh memory pages), the parameters (model, and the loss's
own CBVA head), the FLOPs of one step counted by torch's profiler (matrix products: mm, addmm, bmm;
elementwise work is not counted) and the achieved rate = FLOPs / median time, over the peak: the best
of a few large float32 matmuls timed at the same thread count (on --device cuda: on the GPU, with
torch's default float32 matmul precision, and the peak memory is the GPU's). Prints markdown tables.

--precision: one row per configuration and train.precision (prvr.training.precision: the trainer's
own step); the bfloat16 rows are compared with a bfloat16 peak (the same products through
F.linear under bfloat16 autocast, the path the model's layers take) and both peaks are printed.
Like every prvr process, the benchmark keeps freed memory for reuse (prvr.allocator); run it with
PRVR_KEEP_FREED_MEMORY=0 for glibc's defaults (the header says which).
--reference-step: another code's step in seconds, timed in the same session (the authors' code, by
a script outside this repository): each row then shows its ratio to it.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from prvr.allocator import keep_freed_memory
from prvr.config import Config, merge
from prvr.config_sources import ablation_config
from prvr.losses import create_loss
from prvr.models import create_model
from prvr.training.optim import create_optimizer
from prvr.training.precision import PRECISIONS, forward_and_losses, step_precision

REPO = Path(__file__).resolve().parents[1]
REAL_SHAPE = {
    "model": {"input_dim": 768, "hidden": 384, "heads": 4, "frame_tokens": 128, "clip_tokens": 32,
              "merging": {"stages": [80, 52, 32]}},
    "loss": {"cbva": {"adaptive": {"segment_choices": [32, 20, 12, 8, 5]}}},
}
PEAK_SHAPES = ((4096, 4096, 4096), (16384, 384, 1536), (16384, 1536, 384))
BF16_PEAK_SHAPES = ((2048, 2048, 2048), (16384, 384, 1536), (16384, 1536, 384))  # CPUs without
# bfloat16 units run these at ~20 GFLOP/s: 4096^3 would take minutes


def real_batch(n_videos=128, n_queries=640, max_len=34, dim=768, frames=128, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, max_len + 1, (n_queries,), generator=g)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (Q, L)
    query_feats = torch.randn(n_queries, max_len, dim, generator=g) * mask[..., None]
    eot = query_feats[torch.arange(n_queries), lengths - 1]  # (Q, D)
    owner = torch.arange(n_queries) % n_videos  # 5 captions per video, as TVR
    return {"frame_feats": torch.randn(n_videos, frames, dim, generator=g), "query_feats": query_feats,
            "query_mask": mask, "query_to_video": owner, "query_eot": eot}


def sync(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock times cover it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(repeats: int = 3, device: str = "cpu", precision: str = "float32", rounds: int = 3) -> float:
    """Best matmul rate (FLOP/s) at the current thread count (or on the GPU): float32 products over
    PEAK_SHAPES, or those of F.linear under bfloat16 autocast over BF16_PEAK_SHAPES; the best of
    `rounds` timings of each shape (one timing read 177 GFLOP/s where others read 310-350)."""
    best, half = 0.0, precision == "bfloat16"
    for m, k, n in BF16_PEAK_SHAPES if half else PEAK_SHAPES:
        a, b = torch.randn(m, k, device=device), torch.randn(n, k, device=device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=half):
            F.linear(a, b)
            for _ in range(rounds):
                sync(device)
                start = time.perf_counter()
                for _ in range(repeats):
                    F.linear(a, b)
                sync(device)
                best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - start))
    return best


class Step:
    """Model, loss and optimiser of one configuration; calling it runs one training step."""

    def __init__(self, cfg: Config, batch: dict, device: str = "cpu", precision: str = "float32"):
        self.model = create_model(cfg.model).train().to(device)
        self.loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden).to(device)
        self.optimizer = create_optimizer(cfg.train, self.model, self.loss_fn)
        self.generator = torch.Generator().manual_seed(0)
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.device, self.precision = device, precision

    def parameters(self) -> tuple[int, int]:
        return (sum(p.numel() for p in self.model.parameters()),
                sum(p.numel() for p in self.loss_fn.parameters()))

    def __call__(self) -> None:
        with step_precision(self.precision, self.device):
            terms = forward_and_losses(self.model, self.loss_fn, self.batch, self.precision, self.device,
                                       epoch=30, generator=self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            self.optimizer.step()


def step_flops(step: Step) -> float:
    """FLOPs of one step as torch's profiler counts them (matrix products)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step()
    return float(sum(event.flops for event in prof.key_averages()))


def time_steps(step: Step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(step.device)
        start = time.perf_counter()
        step()
        sync(step.device)
        times.append(time.perf_counter() - start)
    return times


def peak_memory_gb(device: str) -> float:
    """Peak resident memory of this process, or the GPU's peak allocation on cuda."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", default="gmmformer_v2", help="model.name")
    parser.add_argument("--ablations", nargs="*", default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=PRECISIONS)
    parser.add_argument("--reference-step", type=float, default=None,
                        help="another code's step (s) timed in the same session: rows show their ratio to it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as every training process does (prvr.pipeline.run_step)
    names = args.ablations or sorted(p.stem for p in (REPO / "config/ablations").glob("*.yaml"))
    base = merge(Config(), {**REAL_SHAPE, "model": {**REAL_SHAPE["model"], "name": args.model}})
    batch = real_batch()
    peaks = {p: matmul_peak(device=args.device, precision="bfloat16" if p == "bfloat16" else "float32")
             for p in dict.fromkeys("bfloat16" if p == "bfloat16" else "float32" for p in args.precision)}
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} threads"
    print(f"torch {torch.__version__}, {where}, model {args.model}; 128 videos x 128 x 768, "
          f"640 queries <= 34 tokens; freed memory {'kept' if kept else 'returned (system malloc settings)'}; "
          f"matmul peaks: "
          + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()) + "\n")
    ratio = " | x reference" if args.reference_step else ""
    print(f"| configuration | precision | params M (model + loss head) | median s/step | fastest s/step | GFLOP/step "
          f"| GFLOP/s (median) | of its peak | peak memory GB{ratio} |\n|---|---|---|---|---|---|---|---|---|"
          + ("---|" if ratio else ""))
    for name in names:
        for precision in args.precision:
            _row(name, precision, base, batch, args, peaks["bfloat16" if precision == "bfloat16" else "float32"])


def _row(name: str, precision: str, base: Config, batch: dict, args, peak: float) -> None:
    step = Step(ablation_config(base, REPO / f"config/ablations/{name}.yaml"), batch, args.device, precision)
    times = time_steps(step, args.warmup, args.steps)
    flops = step_flops(step)
    model_params, head_params = step.parameters()
    median = statistics.median(times)
    rss = peak_memory_gb(args.device)
    extra = f" | {median / args.reference_step:.2f}" if args.reference_step else ""
    print(f"| {name} | {precision} | {model_params / 1e6:.2f} + {head_params / 1e6:.2f} | {median:.2f} | "
          f"{min(times):.2f} | {flops / 1e9:.0f} | {flops / median / 1e9:.0f} | {flops / median / peak:.2f} | "
          f"{rss:.1f}{extra} |", flush=True)


if __name__ == "__main__":
    main()
