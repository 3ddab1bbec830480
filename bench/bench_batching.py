"""Benchmark: per-batch video batching cost at the real TVR shape (issue 3 goal: <= 0.3 s).

    .venv/bin/python -m bench.bench_batching [--videos 128] [--dim 768] [--threads 2] [--repeats 5]

Rows (median of `--repeats` runs after one warm-up, random features, fixed seed):
- resampling: `prvr.store.resample.resample_frames` of `--videos` videos of 100-300 frames to 128
  frame tokens (the data loader's work; the dataset does it once per video at load time);
- collate: `prvr.data.dataset.collate_videos` of those videos with 5 captions of 8-34 tokens each;
- token merging: `prvr.models.token_merging.merge_stages`, 128 -> 80 -> 52 -> 32, batched;
- the same merging one video at a time (the per-video loop the batched version replaces);
- merge_to_counts: adaptive CBVA's per-video further merging of 32 encoded clip tokens (hidden
  384) to counts in {32, 20, 12, 8, 5}, both pairings.
Prints a markdown table and the total of the batching rows. Run it on an otherwise idle machine:
with other processes on the 2 cores, 2-thread torch timings suffer from OpenMP contention (compare
with --threads 1).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from prvr.data.dataset import collate_videos
from prvr.store.resample import resample_frames
from prvr.models.token_merging import merge_stages, merge_to_counts

STAGES = (80, 52, 32)
SEGMENT_STAGES = (20, 12, 8, 5)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, first-call dispatch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_inputs(n_videos: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = [rng.standard_normal((int(rng.integers(100, 301)), dim)).astype(np.float32)
           for _ in range(n_videos)]
    items = [{"vid": f"v{i}", "frames": resample_frames(v, 128),
              "queries": [rng.standard_normal((int(rng.integers(8, 35)), dim)).astype(np.float32)
                          for _ in range(5)]} for i, v in enumerate(raw)]
    return raw, items


def run(n_videos: int, dim: int, repeats: int) -> list[tuple[str, float]]:
    raw, items = make_inputs(n_videos, dim)
    frames = torch.from_numpy(np.stack([it["frames"] for it in items]))  # (B, 128, D)
    merged = merge_stages(frames, STAGES)
    clip_tokens = torch.randn(n_videos, 32, 384, requires_grad=True)
    counts = torch.tensor([(32, 20, 12, 8, 5)[i % 5] for i in range(n_videos)])

    def segments(pairing):
        return lambda: merge_to_counts(clip_tokens, merged.sizes, merged.frame_to_token, counts,
                                       SEGMENT_STAGES, metric=merged.features, pairing=pairing)

    rows = [
        ("resampling (resample_frames, 100-300 -> 128 frames)",
         median_seconds(lambda: [resample_frames(v, 128) for v in raw], repeats)),
        ("collate_videos (5 captions per video)", median_seconds(lambda: collate_videos(items), repeats)),
        ("token merging 128 -> 80 -> 52 -> 32, batched",
         median_seconds(lambda: merge_stages(frames, STAGES), repeats)),
        ("token merging, same code looping over videos (B=1 each)",
         median_seconds(lambda: [merge_stages(frames[i:i + 1], STAGES) for i in range(n_videos)],
                        max(1, repeats // 2))),
        ("merge_to_counts 32 -> {20,12,8,5}, adjacent", median_seconds(segments("adjacent"), repeats)),
        ("merge_to_counts 32 -> {20,12,8,5}, bipartite", median_seconds(segments("bipartite"), repeats)),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=128)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = run(args.videos, args.dim, args.repeats)
    print(f"{args.videos} videos, feature size {args.dim}, {args.threads} threads, "
          f"median of {args.repeats}\n")
    print("| step | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.4f} |")
    batching = rows[0][1] + rows[2][1]
    print(f"\nbatching total (resampling + batched merging): {batching:.3f} s (goal <= 0.3 s)")


if __name__ == "__main__":
    main()
