"""Benchmark: the cost columns of the main table. Per configuration of config main_table (each an
ablation file), at a dataset's real shape: parameters, one training step, one evaluation of the test split.

    .venv/bin/python -m bench.bench_costs [--shape tvr] [--configurations ms_sl baseline adaptive ...]
        [--steps 3] [--warmup 1] [--eval-fraction 1.0] [--threads 2] [--device cpu] [--out FILE]

Shapes (SHAPES): the model sizes and batch of config/config.yaml with config/datasets/<shape>.yaml
over it (tvr: 768-d inputs, hidden 384, 128 frame tokens, 32 clip tokens, batch 128 videos with 5
captions each, as TVR's 87,175 captions of 17,435 videos), each ablation file applied as the pipeline
applies it; the test split's size (TVR: 2,179 videos, 10,895 queries). `demo` is config.yaml's own
sizes, `tiny` a toy shape for tests. Captions have 8..34 token rows. Inputs are random (the times do
not depend on the values).

- parameters: of the model, and those the loss owns in training (the CBVA head);
- training step: the trainer's own `train_epoch` on one batch (model forward, every loss term,
  backward, optimiser and schedule step) at an epoch past hard_negative_start_epoch; median and
  fastest of --steps after --warmup; the FLOPs of one step (torch's FlopCounterMode);
- evaluation: encoding every test video and query (eval.batch_size at a time) and the chunked scores
  and metrics, as prvr.evaluation.evaluate does it. With --eval-fraction f < 1 a fraction f of the
  videos and queries is timed and the full split's time extrapolated per item (videos and queries
  linearly, the scores by queries x videos): labelled "extrapolated" in the file and the table;
- per top-level module (e.g. clip_branch, frame_branch, query_encoder): parameters and forward FLOPs
  of encoding one batch, so a second branch's share is a measured number.

Comparisons printed at the end (the seed summary's "about 40 % more parameters and compute" of the
dual-branch design): (1) the full method (the last MSC configuration, gmmformer_v2*) against the
GMMFormer-v2 baseline (the first): ratios of parameters, step time, step FLOPs and evaluation time;
(2) its dual-branch encoder against its frame branch alone: the clip branch's parameters and forward
FLOPs over the rest of the model. A configuration whose ablation file or model is missing is skipped
with the reason printed. Writes results/costs_<shape>.json (read by the main_table rule), naming the
machine (CPU model or GPU, threads, torch version).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no trainer progress bar per timed step (read when tqdm loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from prvr.config_sources import Layer, ablation_config, resolve_layers  # noqa: E402
from prvr.evaluation import model_scores  # noqa: E402
from prvr.evaluation.evaluate import score_branches  # noqa: E402
from prvr.evaluation.metrics import retrieval_metrics  # noqa: E402
from prvr.io import write_json  # noqa: E402
from prvr.losses import create_loss  # noqa: E402
from prvr.models import MODEL_BUILDERS, create_model  # noqa: E402
from prvr.provenance import code_version, sha256_file  # noqa: E402
from prvr.training.optim import create_optimizer, create_scheduler  # noqa: E402
from prvr.training.trainer import train_epoch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUERY_TOKENS = (8, 34)  # token rows per caption, drawn uniformly
# name -> (captions per training video, test videos, test queries); method-notes' split sizes
SHAPES = {"tvr": (87175 / 17435, 2179, 10895), "activitynet": (33721 / 9043, 4430, 15753),
          "charades": (12408 / 5338, 1334, 3720), "demo": (5.5, 200, 1100), "tiny": (2, 12, 24)}
TINY = {"model": {"input_dim": 16, "hidden": 8, "heads": 2, "frame_tokens": 8, "clip_tokens": 4,
                  "merging": {"stages": [6, 4]}, "max_query_len": 34},
        "loss": {"cbva": {"adaptive": {"segment_choices": [4, 3, 2]}}}, "train": {"batch_size": 4}}


def base_config(shape: str):
    """config.yaml, with config/datasets/<shape>.yaml over it for a benchmark (tiny: TINY over demo)."""
    layers = [Layer.file(REPO / "config/config.yaml")]
    if shape in ("tvr", "activitynet", "charades"):
        layers.append(Layer("--shape", {"dataset": shape}))
    elif shape == "tiny":
        layers.append(Layer("--shape", TINY))
    return resolve_layers(layers, dataset_dir=REPO / "config/datasets")


def random_queries(n: int, dim: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(QUERY_TOKENS[0], QUERY_TOKENS[1] + 1, (n,), generator=g)
    mask = torch.arange(QUERY_TOKENS[1])[None, :] < lengths[:, None]  # (Q, L)
    return torch.randn(n, QUERY_TOKENS[1], dim, generator=g) * mask[..., None], mask


def training_batch(cfg, captions_per_video: float, seed: int = 0) -> dict:
    """One batch as collate_videos makes it: batch_size videos, round(batch x captions) queries."""
    g = torch.Generator().manual_seed(seed)
    n_videos = cfg.train.batch_size
    n_queries = max(n_videos, round(n_videos * captions_per_video))
    feats, mask = random_queries(n_queries, cfg.model.input_dim, g)
    lengths = mask.sum(1)
    return {"frame_feats": torch.randn(n_videos, cfg.model.frame_tokens, cfg.model.input_dim, generator=g),
            "query_feats": feats, "query_mask": mask, "query_to_video": torch.arange(n_queries) % n_videos,
            "query_eot": feats[torch.arange(n_queries), lengths - 1]}  # (Q, D) last valid token


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_costs(cfg, model, loss_fn, batch: dict, warmup: int, steps: int) -> dict:
    """Median / fastest seconds of the trainer's step on `batch`, and the FLOPs of one step."""
    optimizer = create_optimizer(cfg.train, model, loss_fn)
    scheduler = create_scheduler(cfg.train, optimizer, 10 * (warmup + steps + 1))
    epoch = max(30, cfg.loss.hard_negative_start_epoch)  # hard negatives on, as most of a run
    device = cfg.train.device
    batch = {k: v.to(device) for k, v in batch.items()}
    step = lambda: train_epoch(model, loss_fn, [batch], optimizer, scheduler, epoch, cfg, seed=0)  # noqa: E731
    with FlopCounterMode(display=False) as counter:
        step()
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"train_step_s": statistics.median(times), "train_step_fastest_s": min(times),
            "train_gflop": counter.get_total_flops() / 1e9}


@torch.no_grad()
def eval_costs(cfg, model, n_videos: int, n_queries: int, fraction: float, device: str) -> dict:
    """Seconds to encode a fraction of the split's videos and queries and to score and rank them;
    the full split's time from the per-item rates."""
    model.eval()
    branches = score_branches(model)
    g = torch.Generator().manual_seed(1)
    v, q, bs = max(2, math.ceil(fraction * n_videos)), max(2, math.ceil(fraction * n_queries)), cfg.eval.batch_size
    seconds = {"videos": 0.0, "queries": 0.0, "scores": 0.0}
    videos: dict[str, list] = {}
    for start in range(0, v, bs):
        frames = torch.randn(min(bs, v - start), cfg.model.frame_tokens, cfg.model.input_dim, generator=g).to(device)
        seconds["videos"] += _timed(lambda: videos_append(videos, model.encode_videos(frames), branches), device)
    queries: dict[str, list] = {}
    for start in range(0, q, bs):
        feats, mask = random_queries(min(bs, q - start), cfg.model.input_dim, g)
        feats, mask = feats.to(device), mask.to(device)
        seconds["queries"] += _timed(lambda: queries_append(queries, model.encode_queries(feats, mask)), device)
    video_out = {k: torch.cat(x) for k, x in videos.items()}
    query_out = {k: torch.cat(x) for k, x in queries.items() if k in model_scores.query_keys(branches)}
    positive = np.arange(q) % v
    seconds["scores"] = _timed(lambda: retrieval_metrics(model_scores.model_scores_chunked(
        query_out, video_out, branches, (cfg.eval.w_clip, cfg.eval.w_frame), dtype=torch.float64).numpy(),
        positive, ks=tuple(cfg.eval.ks), ties=cfg.eval.ties), device)
    full = (seconds["videos"] * n_videos / v + seconds["queries"] * n_queries / q
            + seconds["scores"] * (n_videos * n_queries) / (v * q))
    return {"eval_s": full, "eval_measured_s": sum(seconds.values()), "eval_videos": v, "eval_queries": q,
            **{f"eval_{k}_s": s for k, s in seconds.items()}}


def _timed(work, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


def videos_append(store: dict, out: dict, branches) -> None:
    for key in model_scores.video_keys(branches):
        store.setdefault(key, []).append(out[key].float().cpu())


def queries_append(store: dict, out) -> None:
    for key, value in (out if isinstance(out, dict) else {"query": out}).items():
        store.setdefault(key, []).append(value.float().cpu())


@torch.no_grad()
def module_costs(model, batch: dict, device: str) -> dict:
    """Parameters and forward GFLOPs (one batch: videos and queries) of each top-level module."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(frame_feats=batch["frame_feats"].to(device), query_feats=batch["query_feats"].to(device),
              query_mask=batch["query_mask"].to(device))
    flops = counter.get_flop_counts()
    root = type(model).__name__
    out = {}
    for name, module in model.named_children():
        out[name] = {"params": sum(p.numel() for p in module.parameters()),
                     "forward_gflop": sum(flops.get(f"{root}.{name}", {}).values()) / 1e9}
    own = sum(p.numel() for p in model.parameters(recurse=False))  # e.g. GMMFormer v2's fusion token
    if own:
        out["(own parameters)"] = {"params": own, "forward_gflop": 0.0}
    out["total"] = {"params": sum(p.numel() for p in model.parameters()),
                    "forward_gflop": sum(flops.get("Global", {}).values()) / 1e9}
    return out


def measure(name: str, base, shape: str, args) -> dict:
    """The costs of one configuration, or {"skipped": reason}."""
    path = REPO / "config/ablations" / f"{name}.yaml"
    if not path.is_file():
        return {"skipped": f"no ablation file {path.relative_to(REPO)} yet"}
    cfg = ablation_config(base, path)
    if cfg.model.name not in MODEL_BUILDERS:
        return {"skipped": f"model {cfg.model.name!r} is not registered in prvr.models yet"}
    cfg.train.device = args.device
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    captions, n_videos, n_queries = SHAPES[shape]
    model = create_model(cfg.model, seed=0).to(args.device)
    loss_fn = create_loss(cfg.loss, hidden=cfg.model.hidden, model_name=cfg.model.name,
                          branches=score_branches(model)).to(args.device)
    batch = training_batch(cfg, captions)
    row = {"model": cfg.model.name, "ablation_sha256": sha256_file(path),
           "params": sum(p.numel() for p in model.parameters()),
           "loss_params": sum(p.numel() for p in loss_fn.parameters()),
           "batch_videos": cfg.train.batch_size, "batch_queries": int(batch["query_feats"].shape[0])}
    row["modules"] = module_costs(model, batch, args.device)
    row.update(train_costs(cfg, model.train(), loss_fn, batch, args.warmup, args.steps))
    row.update(eval_costs(cfg, model, n_videos, n_queries, args.eval_fraction, args.device))
    if args.device.startswith("cuda"):
        row["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def machine(args) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    return {"cpu": cpu, "gpu": gpu, "device": args.device, "device_name": gpu or cpu,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def comparisons(rows: dict) -> dict:
    """(1) the last MSC configuration over the first; (2) its clip branch over the rest of it."""
    msc = [n for n, r in rows.items() if "skipped" not in r and r["model"].startswith("gmmformer_v2")]
    out = {}
    if len(msc) > 1:
        a, b = rows[msc[0]], rows[msc[-1]]
        out["method_vs_baseline"] = {
            "method": msc[-1], "baseline": msc[0],
            "params": (b["params"] + b["loss_params"]) / (a["params"] + a["loss_params"]),
            "train_step_s": b["train_step_s"] / a["train_step_s"], "train_gflop": b["train_gflop"] / a["train_gflop"],
            "eval_s": b["eval_s"] / a["eval_s"]}
    if msc and "clip_branch" in rows[msc[-1]]["modules"]:
        m = rows[msc[-1]]["modules"]
        rest = {k: m["total"][k] - m["clip_branch"][k] for k in ("params", "forward_gflop")}
        out["dual_vs_frame_branch_only"] = {"configuration": msc[-1],
                                            **{k: m["clip_branch"][k] / rest[k] for k in rest}}
    return out


def print_tables(result: dict) -> None:
    m, rows = result["machine"], result["configurations"]
    print(f"\n{result['shape']['name']} shape, {m['device_name']}, {m['threads']} threads, torch {m['torch']}; "
          f"batch {result['shape']['batch']}; eval {result['shape']['eval_videos']} videos / "
          f"{result['shape']['eval_queries']} queries (fraction {result['scale']['eval_fraction']:g})\n")
    print("| configuration | model | params M (model + loss) | median s/step | fastest s/step | GFLOP/step "
          "| eval s (full split) | eval s measured | clip branch params M |\n|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} |||||||")
            continue
        clip = r["modules"].get("clip_branch", {}).get("params")
        print(f"| {name} | {r['model']} | {r['params'] / 1e6:.2f} + {r['loss_params'] / 1e6:.2f} "
              f"| {r['train_step_s']:.3f} | {r['train_step_fastest_s']:.3f} | {r['train_gflop']:.1f} "
              f"| {r['eval_s']:.1f} | {r['eval_measured_s']:.1f} | {'-' if clip is None else f'{clip / 1e6:.2f}'} |")
    for key, c in result["comparison"].items():
        print(f"\n{key}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="tvr", choices=sorted(SHAPES))
    parser.add_argument("--configurations", nargs="*", default=None, help="default: config main_table")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--eval-fraction", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="default: results/costs_<shape>.json")
    args = parser.parse_args(argv)
    if not 0 < args.eval_fraction <= 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--eval-fraction must be in (0, 1], --steps >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    base = base_config(args.shape)
    names = args.configurations or list(base.main_table)
    captions, n_videos, n_queries = SHAPES[args.shape]
    rows = {}
    for name in names:
        try:
            rows[name] = measure(name, base, args.shape, args)
        except Exception as err:  # noqa: BLE001 - one model's failure is reported, the others still measured
            rows[name] = {"skipped": f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        print(f"{name}: {rows[name].get('skipped') or 'measured'}", flush=True)
    m = base.model
    result = {"shape": {"name": args.shape, "input_dim": m.input_dim, "hidden": m.hidden, "frame_tokens": m.frame_tokens,
                        "clip_tokens": m.clip_tokens, "batch": f"{base.train.batch_size} videos x {captions:.2f} captions",
                        "eval_videos": n_videos, "eval_queries": n_queries},
              "machine": machine(args), "code": code_version(),
              "scale": {"train_steps": args.steps, "warmup": args.warmup, "eval_fraction": args.eval_fraction,
                        "eval_extrapolated": args.eval_fraction < 1},
              "configurations": rows, "comparison": comparisons(rows)}
    out = Path(args.out) if args.out else REPO / "results" / f"costs_{args.shape}.json"
    write_json(out, result)
    print_tables(result)
    print(f"\nwritten: {out}")
    return result


if __name__ == "__main__":
    main()
