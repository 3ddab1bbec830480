"""Benchmark: evaluation and training at TVR scale from the resampled float16 feature cache.

    .venv/bin/python -m bench.bench_scale [--small] [--rows eval train] [--threads 2] [--steps 2]
                                          [--videos 2179] [--queries 10895] [--train-videos 17435]
                                          [--train-captions 87175] [--compare] [--workdir DIR] [--keep]

Generates TVR-shaped features on disk (HDF5 stores in the layout of prvr.data.feature_store, float16
entries to halve the disk: random N(0, 1) rows, T in 50..300 frames x 768 per video, 8..30 tokens x 768
per caption, 5 captions per video), then measures, each in its own child process that reports its
own wall seconds, CPU seconds (user + system) and peak RSS (getrusage(RUSAGE_SELF).ru_maxrss, which
counts the pages of the mapped cache that were touched):

  (a0) building the cache of the test split (prvr.data.feature_cache.build_feature_cache,
       frame_tokens 128, max_query_len 77);
  (a)  evaluating the paper's model (model.name gmmformer_v2, 768 -> 384, 128 frame tokens, 32 clip
       tokens, 4 heads; random weights, seed 0) on that split read from the cache, as
       evaluate.split_scores + retrieval_metrics do it (eval.batch_size 512, the query chunk of
       prvr.evaluation.scoring): encode videos, encode queries, chunked scores, metrics;
  (a') with --compare: the unchunked prvr_scores (the evaluation before the chunking) on the same
       encodings, in the same child after (a): its extra seconds and peak RSS, and whether the
       metrics are equal and the largest score difference;
  (b0) building the cache of the train split;
  (b)  --steps training steps (batch 128 videos with their captions, the trainer's train_epoch
       with the baseline ablation, BertAdam) on the train split read from the cache; the peak RSS
       is the step's (activations, glibc heap growth from step to step: --malloc-mmap-threshold),
       the opened split adds little (reported in the notes).

Prints a markdown table. --small scales everything by 1/10 (a quick check). The times are upper
bounds on a shared machine: CPU seconds / threads is closer to what an idle machine would take.
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

def _usage(start: float) -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": time.perf_counter() - start, "cpu_s": me.ru_utime + me.ru_stime,
            "peak_rss_gb": me.ru_maxrss / 2**20}


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
    start = time.perf_counter()
    dataset = PRVRDataset.from_cache(FeatureCache(args["cache"]), args["captions"], cfg.model)
    model = create_model(cfg.model, seed=0).eval()
    times = {"open": time.perf_counter() - start}
    rss_open = _usage(start)["peak_rss_gb"]
    # evaluate.split_scores + evaluate_split, phase by phase
    mark = time.perf_counter()
    videos = evaluate.encode_videos(model, dataset, cfg.eval.batch_size, "cpu")
    times["encode_videos"] = time.perf_counter() - mark
    mark = time.perf_counter()
    queries = evaluate.encode_queries(model, dataset, cfg.eval.batch_size, "cpu")
    times["encode_queries"] = time.perf_counter() - mark
    mark = time.perf_counter()
    scores = scoring.prvr_scores_chunked(queries, videos["clip_tokens"], videos["frame_tokens"],
                                         w_clip=cfg.eval.w_clip, w_frame=cfg.eval.w_frame,
                                         query_chunk=scoring.QUERY_CHUNK, dtype=torch.float64).numpy()
    times["scores"] = time.perf_counter() - mark
    mark = time.perf_counter()
    index = {v: i for i, v in enumerate(dataset.index.videos)}
    positive = np.array([index[c.split("#", 1)[0]] for c in dataset.index.caption_ids], dtype=np.int64)
    metrics = retrieval_metrics(scores, positive, ks=tuple(cfg.eval.ks), ties=cfg.eval.ties)
    times["metrics"] = time.perf_counter() - mark
    result = {**_usage(start), "times": times, "metrics": metrics, "videos": len(dataset),
              "queries": len(positive), "rss_open_gb": rss_open}
    if args["compare"]:
        mark = time.perf_counter()
        old = scoring.prvr_scores(queries, videos["clip_tokens"], videos["frame_tokens"],
                                  w_clip=cfg.eval.w_clip, w_frame=cfg.eval.w_frame).numpy().astype(np.float64)
        old_metrics = retrieval_metrics(old, positive, ks=tuple(cfg.eval.ks), ties=cfg.eval.ties)
        after = _usage(start)
        result["compare"] = {"wall_s": time.perf_counter() - mark, "peak_rss_gb": after["peak_rss_gb"],
                             "metrics_equal": old_metrics == metrics,
                             "max_abs_diff": float(np.abs(old - scores).max()),
                             "scores_equal_pct": float(100 * np.mean(old == scores))}
    return result


def phase_train(args: dict) -> dict:
    import torch
    from prvr.data.dataset import PRVRDataset, collate_videos
    from prvr.data.feature_cache import FeatureCache
    from prvr.training.trainer import _build, seed_everything, train_epoch
    torch.set_num_threads(args["threads"])
    cfg = paper_config(args["threads"])
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


PHASES = {"generate": phase_generate, "cache": phase_cache, "eval": phase_eval, "train": phase_train}


def run_child(phase: str, args: dict, threads: int, env: dict | None = None) -> dict:
    """Run one phase in a fresh interpreter (its own peak RSS); returns its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    print(f"  {phase} ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--child", phase, json.dumps(args)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- rows

def _row(name: str, size: str, r: dict, notes: str) -> str:
    return f"| {name} | {size} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_gb']:.2f} | {notes} |"


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
    ev = run_child("eval", {"cache": str(root / "cache_test"), "captions": paths["captions"],
                            "threads": a.threads, "compare": a.compare}, a.threads)
    t = ev["times"]
    rows.append(_row("(a) evaluation, gmmformer_v2 paper shape", size, ev,
                     f"encode videos {t['encode_videos']:.1f} s, queries {t['encode_queries']:.1f} s, "
                     f"chunked scores {t['scores']:.1f} s, metrics {t['metrics']:.1f} s, open {t['open']:.1f} s "
                     f"({ev['rss_open_gb']:.2f} GB); "
                     f"SumR {ev['metrics']['SumR']:.2f} (random weights)"))
    if "compare" in ev:
        c = ev["compare"]
        rows.append(f"| (a') unchunked prvr_scores, same encodings | {size} | +{c['wall_s']:.1f} | | "
                    f"{c['peak_rss_gb']:.2f} | metrics equal to (a): {c['metrics_equal']}; "
                    f"{c['scores_equal_pct']:.4f} % of scores bit-equal, max abs diff {c['max_abs_diff']:.2g} |")


def train_rows(root: Path, a, rows: list[str]) -> None:
    size = f"{a.train_videos} videos, {a.train_captions} captions"
    paths = _stores_and_cache(root, a, "train", a.train_videos, a.train_captions, 2,
                              "(b0) cache build, train split", size, rows)
    env = {"MALLOC_MMAP_THRESHOLD_": str(a.malloc_mmap_threshold)} if a.malloc_mmap_threshold else None
    tr = run_child("train", {"cache": str(root / "cache_train"), "captions": paths["captions"],
                             "threads": a.threads, "steps": a.steps}, a.threads, env)
    malloc = f", MALLOC_MMAP_THRESHOLD_={a.malloc_mmap_threshold}" if env else ""
    rows.append(_row(f"(b) training, {a.steps} step(s) of batch 128{malloc}", size, tr,
                     f"{tr['steps_s'] / a.steps:.1f} s/step (baseline ablation, BertAdam); peak RSS with the "
                     f"split opened, before the model: {tr['rss_data_gb']:.2f} GB ({tr['open_s']:.1f} s), the rest "
                     f"is the step (model, activations, optimiser); the store path would hold "
                     f"{tr['store_path_gb']:.1f} GB of float32 features in RAM; loss {tr['loss']:.3f}"))


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
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work), "-n",
           "--cores", "8", "--quiet", "rules", "--config", "dataset=tvr", "seeds=[1,2,3]"]
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    jobs = {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    result = {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime - cpu.ru_utime - cpu.ru_stime,
              "peak_rss_gb": usage.ru_maxrss / 2**20}
    rows.append(_row("(c) snakemake -n, dataset=tvr, 10 configurations x 3 seeds", f"{len(vids)} videos", result,
                     f"{jobs.get('total', 0)} jobs: {jobs.get('video_features_shard', 0)} feature shards, "
                     f"{jobs.get('train', 0)} trainings (goal <= 15 s)"))


ROWS = {"eval": eval_rows, "train": train_rows, "dag": dag_row}


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="row (a'): the unchunked scores too")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="row (b) with glibc's MALLOC_MMAP_THRESHOLD_ fixed (e.g. 1048576): freed "
                             "activations go back to the system instead of fragmenting the heap")
    parser.add_argument("--workdir", default=None, help="where the generated data goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    a = parser.parse_args()
    for key, full in TVR.items():
        if getattr(a, key) is None:
            setattr(a, key, max(1, full // 10) if a.small else full)
    root = Path(tempfile.mkdtemp(prefix="bench_scale.", dir=a.workdir))
    import torch
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} CPUs; data in {root} "
          f"({shutil.disk_usage(root).free / 2**30:.0f} GB free)\n", flush=True)
    rows: list[str] = []
    try:
        for name in a.rows:
            ROWS[name](root, a, rows)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("| row | size | wall s | CPU s | peak RSS GB | notes |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nEach row is one child process: its wall and CPU seconds (user + system) and its peak RSS "
          "(ru_maxrss: touched pages of the mapped cache count). Stores are generated with float16 entries "
          "(the cache is float16 either way).")


if __name__ == "__main__":
    main()
