"""Benchmark: evaluation and training at TVR scale from the resampled float16 feature cache.

    .venv/bin/python -m bench.bench_scale [--small] [--rows eval train dag profile] [--threads 2] [--steps 2]
        [--eval-variants float32 bfloat16 reference] [--train-variants plain checkpointing] [--eval-batch 512]
        [--screen-queries 64] [--no-diagnostics]
        [--model-videos N] [--videos 2179] [--queries 10895] [--train-videos 17435] [--train-captions 87175]
        [--omp-passive] [--malloc-mmap-threshold BYTES] [--workdir DIR] [--keep]

Generates TVR-shaped features on disk (HDF5 stores in the layout of prvr.store.feature_store, float16
entries: random N(0, 1) rows, T in 50..300 frames x 768 per video, 8..30 tokens x 768 per caption,
5 captions per video), then measures, each in its own child process (bench/scale_phases.py) that
reports its own wall and CPU seconds (user + system), peak RSS (ru_maxrss: touched pages of the mapped
cache count) and the machine's 1-minute load average at its start and end:

  (a0) building the cache of the test split (frame_tokens 128, max_query_len 77);
  (a)  evaluating the paper's model (gmmformer_v2, 768 -> 384, 128 frame tokens, 32 clip tokens, 4 heads;
       random weights, seed 0) on that split as evaluate.evaluate_split does it (eval.batch_size
       --eval-batch): open, encode videos, encode queries, ranks (prvr.evaluation.ranking, float32
       screen), metrics; its wall seconds are the sum of those phases. One group of rows per
       --eval-variants: "float32" (this code), "bfloat16" (eval.precision bfloat16), "reference" (the
       evaluation before the inference fast path: the training forward in eval mode, MKL's sgemm for
       every product, eval.batch_size videos per model call); --model-videos overrides
       evaluate.CPU_MODEL_VIDEOS (float32; bfloat16 takes twice as many). In the same child, on the
       same encodings:
  (a1) the scoring before issue 23 (the (Q, V) float64 matrix, near ties settled, retrieval_metrics),
       and whether its metrics equal (a)'s;
  (a2) the bfloat16 screen of prvr.evaluation.ranking on the first --screen-queries queries against
       the float32 screen on the same queries (the share of pairs rescored, the counts compared);
  (a3) the collapse diagnostics of the same encodings (analysis.encoded_record, as the evaluate job
       computes them; random 2-10 s moments of 60 s videos): seconds, RSS before and peak during them;
  (p)  with the row "profile": where the encoding's CPU time goes (torch.profiler, 64 videos, each
       variant): matrix products, softmax, LayerNorm, copies, the rest;
  (b0) building the cache of the train split;
  (b)  --steps training steps (batch 128 videos, baseline ablation, BertAdam) from the cache, one row
       per --train-variants: "plain", "checkpointing" (train.activation_checkpointing);
  (c)  `snakemake -n` of dataset=tvr with a TVR-size video list and the full grid x 3 seeds.

Every child keeps freed memory for reuse as prvr's jobs do (prvr.allocator; PRVR_KEEP_FREED_MEMORY=0
in the environment for glibc's defaults; --malloc-mmap-threshold sets glibc's threshold for row (b)
instead). Prints a markdown table. --small scales every size by 1/10. The times are upper bounds on a shared
machine (see the load columns; --omp-passive keeps waiting OpenMP threads from spinning there); CPU
seconds / threads is closer to what an idle machine would take.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scale_phases import EVAL_VARIANTS, REPO
from prvr.allocator import ENV_VAR
from prvr.evaluation import ranking

TVR = {"videos": 2179, "queries": 10895, "train_videos": 17435, "train_captions": 87175}


def run_child(phase: str, args: dict, threads: int, env: dict | None = None) -> dict:
    """Run one phase in a fresh interpreter (its own peak RSS); returns its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    print(f"  {phase} ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "bench.scale_phases", phase, json.dumps(args)],
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
    full = (a.videos, a.queries) == (TVR["videos"], TVR["queries"])  # the goals are stated for the TVR test size
    for variant in a.eval_variants:
        ev = run_child("eval", {"cache": str(root / "cache_test"), "captions": paths["captions"], "threads": a.threads,
                                "variant": variant, "batch_size": a.eval_batch, "model_videos": a.model_videos,
                                "video_store": paths["video"], "screen_queries": a.screen_queries,
                                "diagnostics": not a.no_diagnostics}, a.threads)
        rows.extend(_eval_row_group(ev, variant, size, a, full))


def _eval_row_group(ev: dict, variant: str, size: str, a, full: bool) -> list[str]:
    """Rows (a) the evaluation, (a1) the matrix path it replaced, (a2) the bfloat16 screen, (a3) the
    collapse diagnostics of the same encodings: wall seconds of their phases (one child process)."""
    t, cpu = ev["times"], ev["cpu_times"]
    per_call = f", {a.model_videos} videos per model call" if a.model_videos else ""
    encode = t["open"] + t["encode_videos"] + t["encode_queries"]
    evaluation = encode + t["ranks"] + t["metrics"]
    cpu_encode = cpu["open"] + cpu["encode_videos"] + cpu["encode_queries"]
    load = "{:.1f} / {:.1f}".format(*ev["load"])
    out = [f"| (a) evaluation, gmmformer_v2 paper shape, {variant}{per_call} | {size} | {evaluation:.1f} | "
           f"{cpu_encode + cpu['ranks'] + cpu['metrics']:.1f} | {ev['peak_rss_gb']:.2f} (whole child) | {load} | "
           f"open {t['open']:.1f} s ({ev['rss_open_gb']:.2f} GB), encode videos {t['encode_videos']:.1f} s, queries "
           f"{t['encode_queries']:.1f} s, ranks (float32 screen, a query chunk at a time, near ties of "
           f"{t['settled_queries_ranks']} queries settled) {t['ranks']:.1f} s, metrics {t['metrics']:.2f} s; SumR "
           f"{ev['metrics']['SumR']:.2f} (random weights); eval.batch_size {a.eval_batch}"
           + (f"; goal <= 30 s: {'met' if evaluation <= 30 else 'not met'}" if full else "") + " |"]
    if "matrix_scores" in t:
        before = encode + t["matrix_scores"] + t["matrix_settle"] + t["matrix_metrics"]
        cpu_before = cpu_encode + cpu["matrix_scores"] + cpu["matrix_settle"] + cpu["matrix_metrics"]
        out.append(f"| (a1) the same, scored as before issue 23: the (Q, V) float64 matrix | {size} | {before:.1f} | "
                   f"{cpu_before:.1f} | | | scores {t['matrix_scores']:.1f} s, near ties settled {t['matrix_settle']:.1f} s "
                   f"({t['settled_queries']} queries), metrics {t['matrix_metrics']:.2f} s; the same metrics as (a): "
                   f"{ev['matrix_metrics_equal']} |")
    if "bf16" in ev:
        b = ev["bf16"]
        out.append(f"| (a2) bfloat16 screen (prvr.evaluation.ranking) on the first {b['queries']} queries | {size} | "
                   f"{t['bf16_screen']:.1f} | {cpu['bf16_screen']:.1f} | | | float32 screen on the same queries "
                   f"{t['f32_screen_same_queries']:.1f} s (each with its fixed costs: unit tokens of every video, "
                   f"the near pairs in float64); up to {100 * b['band_share']:.1f} % of a chunk's "
                   f"pairs within the rescoring band (above {100 * ranking.MAX_RESCORED:.0f} %: the chunk is redone "
                   f"in float32), {b['bf16_chunks']} of {b['chunks']} chunk(s) kept bfloat16, "
                   f"{100 * b['rescored_share']:.2f} % of all pairs rescored; the same counts: {b['equal']} |")
    if "diagnostics" in t:
        extra = t["moments"] + t["diagnostics"]
        out.append(f"| (a3) collapse diagnostics of the same encodings | {size} | {extra:.1f} | "
                   f"{cpu['moments'] + cpu['diagnostics']:.1f} | "
                   f"{ev['peak_diagnostics_gb']:.2f} (peak during them) | | moments {t['moments']:.1f} s, record "
                   f"{t['diagnostics']:.1f} s; RSS before them {ev['rss_before_diagnostics_gb']:.2f} GB"
                   + (f"; goal <= 20 s: {'met' if extra <= 20 else 'not met'}" if full else "") + " |")
    return out


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
    env = ({"MALLOC_MMAP_THRESHOLD_": str(a.malloc_mmap_threshold), ENV_VAR: "0"}  # glibc's setting, not prvr's
           if a.malloc_mmap_threshold else None)
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
    video lists already made, as after the video_list checkpoints) and the full grid x 3 seeds."""
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
    (work / "results/tvr/video_lists").mkdir(parents=True)
    for split, part in splits.items():
        listed = sorted({r["vid_name"] for r in part})
        (work / f"results/tvr/video_lists/{split}.txt").write_text("".join(v + "\n" for v in listed))
    result = run_child("dag", {"work": str(work)}, a.threads)
    jobs = result["jobs"]
    rows.append(_row("(c) snakemake -n, dataset=tvr, 10 configurations x 3 seeds", f"{len(vids)} videos", result,
                     f"{jobs.get('total', 0)} jobs: {jobs.get('video_features_shard', 0)} feature shards, "
                     f"{jobs.get('train', 0)} trainings (goal <= 15 s)"))


ROWS = {"eval": eval_rows, "train": train_rows, "dag": dag_row, "profile": profile_rows}


def main() -> None:
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
                        help="videos per model call in float32, twice that in bfloat16 "
                             "(evaluate.CPU_MODEL_VIDEOS; default: the code's)")
    parser.add_argument("--screen-queries", type=int, default=64,
                        help="queries on which row (a2) times the bfloat16 screen (0: skip it; on a CPU without "
                             "native bfloat16 products it runs at about 0.6 GFLOP/s)")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip row (a3)")
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
          "(ru_maxrss: touched pages of the mapped cache count); rows (a)-(a3) share one child and give the "
          "wall and CPU seconds of their own phases. Stores are generated with float16 entries "
          "(the cache is float16 either way).")


if __name__ == "__main__":
    main()
