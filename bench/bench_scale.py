"""Benchmark: evaluation and training at TVR scale from the resampled float16 feature cache.

    .venv/bin/python -m bench.bench_scale [--small] [--rows eval train dag profile] [--threads 2] [--steps 2]
        [--eval-variants float32 bfloat16 reference] [--train-variants plain checkpointing] [--eval-batch 512]
        [--model-videos N] [--videos 2179] [--queries 10895] [--train-videos 17435] [--train-captions 87175]
        [--omp-passive] [--malloc-mmap-threshold BYTES] [--workdir DIR] [--keep]

Generates TVR-shaped features on disk (HDF5 stores in the layout of prvr.data.feature_store, float16
entries: random N(0, 1) rows, T in 50..300 frames x 768 per video, 8..30 tokens x 768 per caption,
5 captions per video), then measures, each in its own child process that reports its own wall and CPU
seconds (user + system), peak RSS (ru_maxrss: touched pages of the mapped cache count) and the machine's
1-minute load average at its start and end:

  (a0) building the cache of the test split (frame_tokens 128, max_query_len 77);
  (a)  evaluating the paper's model (gmmformer_v2, 768 -> 384, 128 frame tokens, 32 clip tokens, 4 heads;
       random weights, seed 0) on that split as evaluate.split_scores + retrieval_metrics do it
       (eval.batch_size --eval-batch, the scoring's query chunk): encode videos, encode queries,
       chunked scores, metrics; one row per --eval-variants: "float32" (this code), "bfloat16"
       (eval.precision bfloat16), "reference" (the evaluation before the inference fast path: the
       training forward in eval mode, MKL's sgemm for every product, eval.batch_size videos per model
       call); --model-videos overrides evaluate.CPU_MODEL_VIDEOS (float32; bfloat16 takes twice as many);
  (p)  with the row "profile": where the encoding's CPU time goes (torch.profiler, 64 videos, each
       variant): matrix products, softmax, LayerNorm, copies, the rest;
  (b0) building the cache of the train split;
  (b)  --steps training steps (batch 128 videos, baseline ablation, BertAdam) from the cache, one row
       per --train-variants: "plain", "checkpointing" (train.activation_checkpointing);
  (c)  `snakemake -n` of dataset=tvr with a TVR-size video list and the full grid x 3 seeds.

Prints a markdown table. --small scales every size by 1/10. The times are upper bounds on a shared
machine (see the load columns; --omp-passive keeps waiting OpenMP threads from spinning there); CPU
seconds / threads is closer to what an idle machine would take.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 768
FRAME_TOKENS = 128
MAX_QUERY_LEN = 77
TVR = {"videos": 2179, "queries": 10895, "train_videos": 17435, "train_captions": 87175}
POOL_ROWS = 1 << 16  # rows of random features every generated entry is a slice of


def paper_config(threads: int):
    """The paper's model at the TVR shape (bench_train_step's REAL_SHAPE) with the baseline ablation."""
    from bench.bench_train_step import REAL_SHAPE
    from prvr.config import Config, merge
    from prvr.config_sources import ablation_config
    base = merge(Config(), {**REAL_SHAPE, "model": {**REAL_SHAPE["model"], "name": "gmmformer_v2"},
                            "train": {"batch_size": 128, "num_threads": threads}})
    return ablation_config(base, REPO / "config/ablations/baseline.yaml")


# ---------------------------------------------------------------------------------- generation

def generate_split(root: Path, name: str, n_videos: int, n_captions: int, seed: int) -> dict:
    """`<name>.txt` (captions spread over the videos, 5 each for TVR sizes), `<name>_video.h5`,
    `<name>_text.h5`; float16 entries, slices of one random pool (the timings do not depend on values)."""
    import h5py
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((POOL_ROWS, DIM), dtype=np.float32).astype(np.float16)
    per_video = np.full(n_videos, n_captions // n_videos)
    per_video[: n_captions % n_videos] += 1
    lines = []
    paths = {"captions": root / f"{name}.txt", "video": root / f"{name}_video.h5", "text": root / f"{name}_text.h5"}
    with h5py.File(paths["video"], "w") as fv, h5py.File(paths["text"], "w") as ft:
        for i in range(n_videos):
            vid = f"{name}{i:06d}"
            t = int(rng.integers(50, 301))
            start = int(rng.integers(0, POOL_ROWS - t))
            fv.create_dataset(vid, data=pool[start:start + t])
            for k in range(per_video[i]):
                cid = f"{vid}#enc#{k}"
                n = int(rng.integers(8, 31))
                start = int(rng.integers(0, POOL_ROWS - n))
                ft.create_dataset(cid, data=pool[start:start + n])
                lines.append(f"{cid} a generated caption {k}\n")
    paths["captions"].write_text("".join(lines))
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------------------------- child phases

LOAD_AT_START = os.getloadavg()[0]


def _usage(start: float) -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": time.perf_counter() - start, "cpu_s": me.ru_utime + me.ru_stime,
            "peak_rss_gb": me.ru_maxrss / 2**20, "load": (LOAD_AT_START, os.getloadavg()[0])}


EVAL_VARIANTS = ("float32", "bfloat16", "reference")


def _eval_variant(args: dict) -> str:
    """Set up one evaluation variant in this child; returns its eval.precision."""
    from prvr.evaluation import evaluate
    from prvr.models import attention
    from prvr.models.parallel_gmm import ParallelGMMBlock, WindowedLayer
    if args["variant"] == "reference":
        attention._ONEDNN_LINEAR["usable"] = False
        WindowedLayer._infer = lambda self, x, key_bias: self._forward(x, None, key_bias)
        ParallelGMMBlock._infer = ParallelGMMBlock._forward
        evaluate.CPU_MODEL_VIDEOS = 1 << 30
    if args.get("model_videos"):
        evaluate.CPU_MODEL_VIDEOS = args["model_videos"]
    return "bfloat16" if args["variant"] == "bfloat16" else "float32"


def _timed(times: dict, key: str, work):
    mark = time.perf_counter()
    out = work()
    times[key] = time.perf_counter() - mark
    return out


def phase_generate(args: dict) -> dict:
    start = time.perf_counter()
    paths = generate_split(Path(args["root"]), args["name"], args["videos"], args["captions"], args["seed"])
    return {**_usage(start), "paths": paths,
            "store_gb": sum(Path(paths[k]).stat().st_size for k in ("video", "text")) / 2**30}


def phase_cache(args: dict) -> dict:
    from prvr.data.feature_cache import build_feature_cache
    start = time.perf_counter()
    out = build_feature_cache(args["out"], [args["captions"]], args["video"], args["text"],
                              FRAME_TOKENS, MAX_QUERY_LEN)
    return {**_usage(start), "cache_gb": sum(p.stat().st_size for p in Path(out).iterdir()) / 2**30}


def phase_eval(args: dict) -> dict:
    import torch
    from prvr.data.dataset import PRVRDataset
    from prvr.data.feature_cache import FeatureCache
    from prvr.evaluation import evaluate, scoring
    from prvr.evaluation.metrics import retrieval_metrics
    from prvr.models import create_model
    torch.set_num_threads(args["threads"])
    cfg = paper_config(args["threads"])
    precision = _eval_variant(args)
    start = time.perf_counter()
    dataset = PRVRDataset.from_cache(FeatureCache(args["cache"]), args["captions"], cfg.model)
    model = create_model(cfg.model, seed=0).eval()
    times = {"open": time.perf_counter() - start}
    rss_open = _usage(start)["peak_rss_gb"]
    # evaluate.split_scores + evaluate_split, phase by phase
    videos = _timed(times, "encode_videos", lambda: evaluate.encode_videos(
        model, dataset, args["batch_size"], "cpu", precision=precision))
    queries = _timed(times, "encode_queries", lambda: evaluate.encode_queries(
        model, dataset, args["batch_size"], "cpu", precision=precision))
    scores = _timed(times, "scores", lambda: scoring.prvr_scores_chunked(
        queries, videos["clip_tokens"], videos["frame_tokens"], w_clip=cfg.eval.w_clip, w_frame=cfg.eval.w_frame,
        query_chunk=scoring.QUERY_CHUNK, dtype=torch.float64).numpy())
    index = {v: i for i, v in enumerate(dataset.index.videos)}
    positive = np.array([index[c.split("#", 1)[0]] for c in dataset.index.caption_ids], dtype=np.int64)
    metrics = _timed(times, "metrics", lambda: retrieval_metrics(scores, positive, ks=tuple(cfg.eval.ks),
                                                                 ties=cfg.eval.ties))
    result = {**_usage(start), "times": times, "metrics": metrics, "videos": len(dataset),
              "queries": len(positive), "rss_open_gb": rss_open}
    return result


PROFILE_KINDS = {"matmul": ("addmm", "mm", "bmm", "_linear_pointwise"), "softmax": ("_softmax",),
                 "layer_norm": ("native_layer_norm",), "copies": ("copy_", "cat", "stack", "_to_copy")}


def phase_profile(args: dict) -> dict:
    """Self CPU seconds of encoding `videos` random videos, by kind of operation (PROFILE_KINDS)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from prvr.evaluation import evaluate
    from prvr.models import create_model
    torch.set_num_threads(args["threads"])
    precision = _eval_variant(args)
    model = create_model(paper_config(args["threads"]).model, seed=0).eval()
    frames = torch.randn(args["videos"], FRAME_TOKENS, DIM, generator=torch.Generator().manual_seed(0))
    pieces = frames.split(evaluate._videos_per_call(args["batch_size"], "cpu", precision))
    start = time.perf_counter()
    with torch.no_grad(), evaluate.encoding_precision(precision, "cpu"):
        model.encode_videos(pieces[0][:2])  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for piece in pieces:
                model.encode_videos(piece)
    kinds = dict.fromkeys([*PROFILE_KINDS, "other"], 0.0)
    for event in prof.key_averages():
        name = event.key.split("::")[-1]
        kinds[next((k for k, ops in PROFILE_KINDS.items() if name in ops), "other")] += event.self_cpu_time_total / 1e6
    return {**_usage(start), "kinds": kinds}


def phase_dag(args: dict) -> dict:
    """`snakemake -n` in `work`: its wall and CPU seconds, its peak RSS (this child's children only)."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", args["work"], "-n",
           "--cores", "8", "--quiet", "rules", "--config", "dataset=tvr", "seeds=[1,2,3]"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    jobs = {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_gb": usage.ru_maxrss / 2**20, "load": (LOAD_AT_START, os.getloadavg()[0]), "jobs": jobs}


def phase_train(args: dict) -> dict:
    import torch
    from prvr.data.dataset import PRVRDataset, collate_videos
    from prvr.data.feature_cache import FeatureCache
    from prvr.training.trainer import _build, seed_everything, train_epoch
    from prvr.config import merge
    torch.set_num_threads(args["threads"])
    cfg = merge(paper_config(args["threads"]), {"train": {"activation_checkpointing": args["checkpointing"]}})
    seed_everything(0)
    start = time.perf_counter()
    dataset = PRVRDataset.from_cache(FeatureCache(args["cache"]), args["captions"], cfg.model)
    opened = time.perf_counter() - start
    rss_data = _usage(start)["peak_rss_gb"]  # the interpreter, torch and the opened split
    model, loss_fn, optimizer, scheduler = _build(cfg, len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True,
                                         collate_fn=collate_videos, generator=torch.Generator().manual_seed(0))
    mark = time.perf_counter()
    losses = train_epoch(model, loss_fn, itertools.islice(loader, args["steps"]), optimizer, scheduler, 0, cfg, 0)
    steps_s = time.perf_counter() - mark
    return {**_usage(start), "open_s": opened, "steps_s": steps_s, "loss": losses["loss"], "videos": len(dataset),
            "captions": len(dataset.queries), "rss_data_gb": rss_data,
            "store_path_gb": (len(dataset) * FRAME_TOKENS * DIM + int(sum(
                np.diff(dataset.cache.offsets)[dataset.cache.caption_rows(dataset.index.caption_ids)]))
                * DIM) * 4 / 2**30}


PHASES = {"generate": phase_generate, "cache": phase_cache, "eval": phase_eval, "train": phase_train,
          "profile": phase_profile, "dag": phase_dag}


def run_child(phase: str, args: dict, threads: int, env: dict | None = None) -> dict:
    """Run one phase in a fresh interpreter (its own peak RSS); returns its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    print(f"  {phase} ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--child", phase, json.dumps(args)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- rows

def _row(name: str, size: str, r: dict, notes: str) -> str:
    load = "{:.1f} / {:.1f}".format(*r["load"]) if "load" in r else ""
    return f"| {name} | {size} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_gb']:.2f} | {load} | {notes} |"


def _stores_and_cache(root: Path, a, split: str, videos: int, captions: int, seed: int, row: str,
                      size: str, rows: list[str]) -> dict:
    """Generate a split's stores, build its cache (a row of its own); the generated paths."""
    gen = run_child("generate", {"root": str(root), "name": split, "videos": videos, "captions": captions,
                                 "seed": seed}, a.threads)
    paths = gen["paths"]
    cache = run_child("cache", {"out": str(root / f"cache_{split}"), "captions": paths["captions"],
                                "video": paths["video"], "text": paths["text"]}, a.threads)
    rows.append(_row(row, size, cache,
                     f"stores {gen['store_gb']:.2f} GB (float16, T 50..300) -> cache {cache['cache_gb']:.2f} GB "
                     f"(generating the stores: {gen['wall_s']:.0f} s)"))
    return paths


def eval_rows(root: Path, a, rows: list[str]) -> None:
    size = f"{a.videos} videos, {a.queries} queries"
    paths = _stores_and_cache(root, a, "test", a.videos, a.queries, 1, "(a0) cache build, test split", size, rows)
    full = (a.videos, a.queries) == (TVR["videos"], TVR["queries"])  # the goal is stated for the TVR test size
    for variant in a.eval_variants:
        ev = run_child("eval", {"cache": str(root / "cache_test"), "captions": paths["captions"], "threads": a.threads,
                                "variant": variant, "batch_size": a.eval_batch,
                                "model_videos": a.model_videos}, a.threads)
        t = ev["times"]
        per_call = f", {a.model_videos} videos per model call" if a.model_videos else ""
        rows.append(_row(f"(a) evaluation, gmmformer_v2 paper shape, {variant}{per_call}", size, ev,
                         f"encode videos {t['encode_videos']:.1f} s, queries {t['encode_queries']:.1f} s, "
                         f"chunked scores {t['scores']:.1f} s, metrics {t['metrics']:.1f} s, open {t['open']:.1f} s "
                         f"({ev['rss_open_gb']:.2f} GB); SumR {ev['metrics']['SumR']:.2f} (random weights); "
                         f"eval.batch_size {a.eval_batch}"
                         + (f"; goal <= 60 s: {'met' if ev['wall_s'] <= 60 else 'not met'}" if full else "")))


def profile_rows(root: Path, a, rows: list[str]) -> None:
    for variant in a.eval_variants:
        pr = run_child("profile", {"threads": a.threads, "variant": variant, "videos": 64, "batch_size": a.eval_batch,
                                   "model_videos": a.model_videos}, a.threads)
        total = sum(pr["kinds"].values())
        shares = ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in pr["kinds"].items())
        rows.append(_row(f"(p) profile of encoding, {variant}", "64 videos", pr,
                         f"self CPU {total:.1f} s ({total / 64 * a.videos:.0f} s for {a.videos} videos): {shares}"))


def train_rows(root: Path, a, rows: list[str]) -> None:
    size = f"{a.train_videos} videos, {a.train_captions} captions"
    paths = _stores_and_cache(root, a, "train", a.train_videos, a.train_captions, 2,
                              "(b0) cache build, train split", size, rows)
    env = {"MALLOC_MMAP_THRESHOLD_": str(a.malloc_mmap_threshold)} if a.malloc_mmap_threshold else None
    malloc = f", MALLOC_MMAP_THRESHOLD_={a.malloc_mmap_threshold}" if env else ""
    for variant in a.train_variants:
        tr = run_child("train", {"cache": str(root / "cache_train"), "captions": paths["captions"], "threads": a.threads,
                                 "steps": a.steps, "checkpointing": variant == "checkpointing"}, a.threads, env)
        rows.append(_row(f"(b) training, {a.steps} step(s) of batch 128, {variant}{malloc}", size, tr,
                         f"{tr['steps_s'] / a.steps:.1f} s/step (baseline ablation, BertAdam); peak RSS with the "
                         f"split opened, before the model: {tr['rss_data_gb']:.2f} GB ({tr['open_s']:.1f} s), the rest "
                         f"is the step (model, activations, optimiser); the store path would hold "
                         f"{tr['store_path_gb']:.1f} GB of float32 features in RAM; loss {tr['loss']:.6f}; "
                         f"goal <= 8 GB: {'met' if tr['peak_rss_gb'] <= 8 else 'not met'}"))


def _tvr_rows(prefix: str, n_videos: int, per_video: int = 5) -> list[dict]:
    return [{"vid_name": f"{prefix}{i:05d}", "duration": 60.0, "ts": [1.0, 5.0], "desc": f"query {k}",
             "desc_id": i * per_video + k} for i in range(n_videos) for k in range(per_video)]


def dag_row(root: Path, a, rows: list[str]) -> None:
    """`snakemake -n` of dataset=tvr with a generated TVR-size video list (its annotation tables and
    videos.txt already made, as after the video_list checkpoint) and the full grid x 3 seeds."""
    work = root / "dag"
    (work / "data/tvr/frames").mkdir(parents=True)
    train, test = _tvr_rows("tr", a.train_videos), _tvr_rows("te", a.videos)
    for name, part in (("tvr_train_release.jsonl", train), ("tvr_val_release.jsonl", test)):
        (work / "data/tvr" / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    time.sleep(1.1)  # the tables below are newer than their sources: nothing upstream reruns
    n_val = round(0.1 * a.train_videos) * 5
    splits = {"train": train[n_val:], "val": train[:n_val], "test": test}
    tables = work / "results/tvr/annotations"
    tables.mkdir(parents=True)
    for split, part in splits.items():
        (tables / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    vids = sorted({r["vid_name"] for part in splits.values() for r in part})
    (work / "results/tvr/videos.txt").write_text("".join(v + "\n" for v in vids))
    result = run_child("dag", {"work": str(work)}, a.threads)
    jobs = result["jobs"]
    rows.append(_row("(c) snakemake -n, dataset=tvr, 10 configurations x 3 seeds", f"{len(vids)} videos", result,
                     f"{jobs.get('total', 0)} jobs: {jobs.get('video_features_shard', 0)} feature shards, "
                     f"{jobs.get('train', 0)} trainings (goal <= 15 s)"))


ROWS = {"eval": eval_rows, "train": train_rows, "dag": dag_row, "profile": profile_rows}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(PHASES[sys.argv[2]](json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--rows", nargs="*", default=["eval", "train", "dag"], choices=sorted(ROWS))
    parser.add_argument("--small", action="store_true", help="every size / 10: a quick check")
    parser.add_argument("--videos", type=int, default=None, help=f"test videos (default {TVR['videos']})")
    parser.add_argument("--queries", type=int, default=None, help=f"test queries (default {TVR['queries']})")
    parser.add_argument("--train-videos", type=int, default=None, help=f"(default {TVR['train_videos']})")
    parser.add_argument("--train-captions", type=int, default=None, help=f"(default {TVR['train_captions']})")
    parser.add_argument("--steps", type=int, default=2, help="training steps of row (b)")
    parser.add_argument("--eval-variants", nargs="+", default=list(EVAL_VARIANTS), choices=EVAL_VARIANTS)
    parser.add_argument("--train-variants", nargs="+", default=["plain", "checkpointing"],
                        choices=["plain", "checkpointing"])
    parser.add_argument("--eval-batch", type=int, default=512, help="eval.batch_size (default: config's 512)")
    parser.add_argument("--model-videos", type=int, default=None,
                        help="videos per model call in float32, twice that in bfloat16 (evaluate.CPU_MODEL_VIDEOS; default: the code's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE in every child: "
                        "idle OpenMP threads sleep instead of spinning (fairer numbers on a shared machine)")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="row (b) with glibc's MALLOC_MMAP_THRESHOLD_ fixed (e.g. 1048576): freed "
                             "activations go back to the system instead of fragmenting the heap")
    parser.add_argument("--workdir", default=None, help="where the generated data goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    a = parser.parse_args()
    if a.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # the children inherit it
    for key, full in TVR.items():
        if getattr(a, key) is None:
            setattr(a, key, max(1, full // 10) if a.small else full)
    root = Path(tempfile.mkdtemp(prefix="bench_scale.", dir=a.workdir))
    import torch
    print(f"torch {torch.__version__}, {a.threads} threads{', OMP_WAIT_POLICY=PASSIVE' * a.omp_passive}, "
          f"{os.cpu_count()} CPUs; data in {root} "
          f"({shutil.disk_usage(root).free / 2**30:.0f} GB free)\n", flush=True)
    rows: list[str] = []
    try:
        for name in a.rows:
            ROWS[name](root, a, rows)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("| row | size | wall s | CPU s | peak RSS GB | load avg start / end | notes |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nEach row is one child process: its wall and CPU seconds (user + system) and its peak RSS "
          "(ru_maxrss: touched pages of the mapped cache count). Stores are generated with float16 entries "
          "(the cache is float16 either way).")


if __name__ == "__main__":
    main()
