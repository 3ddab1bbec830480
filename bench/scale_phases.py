"""The child phases of bench/bench_scale.py, each run in a fresh interpreter so that its wall time, CPU
time and peak RSS are its own:

    .venv/bin/python -m bench.scale_phases PHASE JSON_ARGS    # prints one JSON line

Phases: generate (TVR-shaped HDF5 stores), cache (the resampled float16 cache), eval (the evaluation
phase by phase), profile (where the encoding's CPU time goes), train (training steps from the cache),
dag (`snakemake -n` of dataset=tvr). See bench/bench_scale.py for what each row measures.
"""
from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 768
FRAME_TOKENS = 128
MAX_QUERY_LEN = 77
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
    import torch

    from prvr.evaluation import evaluate
    from prvr.models import attention
    from prvr.models.parallel_gmm import ParallelGMMBlock, WindowedLayer
    if args["variant"] == "reference":
        attention._ONEDNN_LINEAR.update({torch.float32: False, torch.bfloat16: False})
        WindowedLayer._infer = lambda self, x, key_bias: self._forward(x, None, key_bias)
        ParallelGMMBlock._infer = ParallelGMMBlock._forward
        evaluate.CPU_MODEL_VIDEOS = 1 << 30
    if args.get("model_videos"):
        evaluate.CPU_MODEL_VIDEOS = args["model_videos"]
    return "bfloat16" if args["variant"] == "bfloat16" else "float32"


CPU_TIMES: dict[str, float] = {}  # CPU seconds (this process, all threads) of each _timed phase


def _timed(times: dict, key: str, work):
    mark, cpu = time.perf_counter(), time.process_time()
    out = work()
    times[key] = time.perf_counter() - mark
    CPU_TIMES[key] = time.process_time() - cpu
    return out


def phase_generate(args: dict) -> dict:
    start = time.perf_counter()
    paths = generate_split(Path(args["root"]), args["name"], args["videos"], args["captions"], args["seed"])
    return {**_usage(start), "paths": paths,
            "store_gb": sum(Path(paths[k]).stat().st_size for k in ("video", "text")) / 2**30}


def phase_cache(args: dict) -> dict:
    from prvr.store.feature_cache import build_feature_cache
    start = time.perf_counter()
    out = build_feature_cache(args["out"], [args["captions"]], args["video"], args["text"],
                              FRAME_TOKENS, MAX_QUERY_LEN)
    return {**_usage(start), "cache_gb": sum(p.stat().st_size for p in Path(out).iterdir()) / 2**30}


def _peak_rss_gb() -> float:
    """This process's peak RSS since the last _reset_peak (VmHWM; ru_maxrss where /proc is not writable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> float:
    """Reset the peak RSS to the current RSS (Linux clear_refs 5); returns the current RSS in GB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _peak_rss_gb()


def _bench_moments(dataset, video_store: str, seed: int = 0):
    """SplitMoments of the generated split: each caption a random 2-10 s moment of a 60 s video."""
    from prvr.evaluation.analysis import split_moments
    from prvr.sources.annotations import Query
    from prvr.store.feature_store import FeatureStore
    rng = np.random.default_rng(seed)
    queries = {}
    for cid in dataset.index.caption_ids:
        start = float(rng.uniform(0, 50))
        queries[cid] = Query(cid.split("#")[0], 60.0, start, start + float(rng.uniform(2, 10)), "", 0, cid)
    with FeatureStore(video_store) as store:
        n_frames = {v: store.shape(v)[0] for v in dataset.index.videos}
    return split_moments(dataset.index, queries, n_frames, FRAME_TOKENS)


def _matrix_metrics(queries, videos, branches, positive, cfg, times: dict) -> dict:
    """evaluate.split_scores's way, as the evaluation ranked before issue 23: the (Q, V) float64 matrix,
    its near ties settled (here all in one ties.settle_near_pairs call), retrieval_metrics."""
    from prvr.evaluation import model_scores, ranking, scoring, ties
    from prvr.evaluation.metrics import retrieval_metrics
    import torch
    weights = (cfg.eval.w_clip, cfg.eval.w_frame)
    scores = _timed(times, "matrix_scores", lambda: model_scores.model_scores_chunked(
        queries, videos, branches, weights, scoring.QUERY_CHUNK, torch.float64).numpy())
    times["settled_queries"] = _timed(times, "matrix_settle", lambda: ties.settle_near_pairs(
        scores, positive, ranking.PairScorer(queries, videos, branches, weights), cfg.eval.tie_tolerance))
    return _timed(times, "matrix_metrics", lambda: retrieval_metrics(scores, positive, ks=tuple(cfg.eval.ks),
                                                                     ties=cfg.eval.ties))


def _bf16_screen(queries, videos, branches, positive, cfg, n_queries: int, times: dict) -> dict:
    """The bfloat16 screen on the first n_queries queries; its counts against the float32 screen's."""
    from prvr.evaluation import ranking
    part = {k: v[:n_queries] for k, v in queries.items()}
    weights = (cfg.eval.w_clip, cfg.eval.w_frame)
    run = lambda screen: ranking.split_rank_counts(part, videos, branches, weights, positive[:n_queries],  # noqa: E731
                                                   cfg.eval.tie_tolerance, screen=screen)
    higher, tied, stats = _timed(times, "bf16_screen", lambda: run("bfloat16"))
    ref_higher, ref_tied, _ = _timed(times, "f32_screen_same_queries", lambda: run("float32"))
    pairs = len(higher) * videos[branches[0].video_key].shape[0]
    return {"queries": len(higher), "equal": bool((higher == ref_higher).all() and (tied == ref_tied).all()),
            "rescored_share": stats.rescored_pairs / max(1, pairs), "bf16_chunks": stats.bfloat16_chunks,
            "band_share": stats.band_share, "chunks": stats.bfloat16_chunks + stats.float32_chunks}


def phase_eval(args: dict) -> dict:
    """The evaluation phase by phase (evaluate.encode_split, ranking, metrics), the matrix path it
    replaced, optionally the bfloat16 screen on a few queries and the collapse diagnostics of the
    same encodings (time, RSS before and peak RSS during them)."""
    import torch
    from prvr.data.dataset import PRVRDataset
    from prvr.store.feature_cache import FeatureCache
    from prvr.evaluation import analysis, evaluate, ranking
    from prvr.evaluation.metrics import metrics_from_counts
    from prvr.models import create_model
    torch.set_num_threads(args["threads"])
    cfg = paper_config(args["threads"])
    precision = _eval_variant(args)
    start, cpu_start = time.perf_counter(), time.process_time()
    dataset = PRVRDataset.from_cache(FeatureCache(args["cache"]), args["captions"], cfg.model)
    model = create_model(cfg.model, seed=0).eval()
    times = {"open": time.perf_counter() - start}
    CPU_TIMES["open"] = time.process_time() - cpu_start
    rss_open = _usage(start)["peak_rss_gb"]
    branches = evaluate.score_branches(model)
    video_keys = ranking.model_scores.video_keys(branches)
    # evaluate.encode_split(analysed=True), phase by phase
    videos = _timed(times, "encode_videos", lambda: evaluate.encode_videos(
        model, dataset, args["batch_size"], "cpu", video_keys, ("frame_to_clip",), precision))
    queries = _timed(times, "encode_queries", lambda: evaluate.encode_queries(
        model, dataset, args["batch_size"], "cpu", ("query",), precision))
    positive = evaluate.relevant_videos(dataset)
    weights = (cfg.eval.w_clip, cfg.eval.w_frame)
    higher, tied, stats = _timed(times, "ranks", lambda: ranking.split_rank_counts(
        queries, videos, branches, weights, positive, cfg.eval.tie_tolerance, screen="float32"))
    metrics = _timed(times, "metrics", lambda: metrics_from_counts(higher, tied, tuple(cfg.eval.ks), cfg.eval.ties))
    times["settled_queries_ranks"] = stats.settled_queries
    result = {"times": times, "metrics": metrics, "videos": len(dataset), "queries": len(positive),
              "rss_open_gb": rss_open}
    if args.get("compare", True):
        result["matrix_metrics_equal"] = _matrix_metrics(queries, videos, branches, positive, cfg, times) == metrics
    if args.get("screen_queries"):
        result["bf16"] = _bf16_screen(queries, videos, branches, positive, cfg, args["screen_queries"], times)
    if args.get("diagnostics", True):
        moments = _timed(times, "moments", lambda: _bench_moments(dataset, args["video_store"]))
        result["rss_before_diagnostics_gb"] = _reset_peak()
        result["diagnostics"] = _timed(times, "diagnostics", lambda: analysis.encoded_record(
            {"query": queries["query"]}, videos, dataset, moments))
        result["peak_diagnostics_gb"] = _peak_rss_gb()
    return {**_usage(start), **result, "cpu_times": CPU_TIMES}


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
    from prvr.store.feature_cache import FeatureCache
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
            "store_path_gb": (len(dataset) * FRAME_TOKENS * DIM
                              + int(dataset.queries.lengths(dataset.index.caption_ids).sum()) * DIM) * 4 / 2**30}


PHASES = {"generate": phase_generate, "cache": phase_cache, "eval": phase_eval, "train": phase_train,
          "profile": phase_profile, "dag": phase_dag}


if __name__ == "__main__":
    from prvr.allocator import keep_freed_memory
    keep_freed_memory()  # as the evaluate and train jobs do (prvr.pipeline.run_step)
    print(json.dumps(PHASES[sys.argv[1]](json.loads(sys.argv[2]))))
