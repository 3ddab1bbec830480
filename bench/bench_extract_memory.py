"""Benchmark: peak memory of video feature extraction against the number of videos (it must not grow).

    .venv/bin/python bench/bench_extract_memory.py [--counts 200 2000] [--workdir DIR] [--keep]

Writes max(counts) short synthetic MP4s once (a moving square on a per-video background, H.264 via
prvr.demo.synthetic.write_mp4), then, for each N in --counts, runs
`prvr.features.extract.extract_video_features` on the first N of them in a fresh subprocess
(tiny CLIP, random weights, FramesConfig(fps=--fps, backend=--backend)): one HDF5 shard of N videos. The child reports
its wall time and peak RSS (resource.getrusage, ru_maxrss) before and after extraction, so the table
shows the model + imports baseline and what extraction added. Prints a markdown table and the ratio
of peak RSS between the largest and the smallest N: ~1.0 means extraction streams (one video in
memory at a time), a ratio near N_max / N_min would mean it collects features or frames. What
remains is HDF5's metadata for the datasets already written: ~5 MiB per 1000 videos, bounded by
its metadata cache (~25 MiB, reached at ~6000 datasets in one file).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_videos(folder: Path, n: int, size: int, seconds: float, fps: int) -> list[Path]:
    """n distinct short videos (vid00000.mp4, ...); files already there are kept."""
    from prvr.demo.synthetic import write_mp4
    folder.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, round(seconds * fps))
    paths = []
    for index in range(n):
        path = folder / f"vid{index:05d}.mp4"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(index)
        background = rng.integers(0, 256, 3).astype(np.uint8)
        frames = np.broadcast_to(background, (n_frames, size, size, 3)).copy()  # (T, S, S, 3)
        side = size // 4
        for t in range(n_frames):
            x = int((size - side) * t / max(1, n_frames - 1))
            frames[t, side:2 * side, x:x + side] = 255 - background
        write_mp4(frames, fps, path)
    return paths


def child(args: argparse.Namespace) -> None:
    """Extract the first --child videos of --videos-dir into --out; print one JSON line."""
    import torch

    from prvr.config import FramesConfig
    from prvr.features.clip import load_clip
    from prvr.features.extract import extract_video_features

    torch.manual_seed(0)
    encoder = load_clip("prvr-tiny-clip", None, allow_random=True)
    paths = sorted(Path(args.videos_dir).glob("vid*.mp4"))[:args.child]
    if len(paths) < args.child:
        raise SystemExit(f"only {len(paths)} videos in {args.videos_dir}")
    videos = {path.stem: path for path in paths}
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports + model (Linux: KiB)
    start = time.perf_counter()
    summary = extract_video_features(videos, encoder, FramesConfig(fps=args.fps, backend=args.backend),
                                     args.out)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": len(videos), "written": summary["written"], "seconds": seconds,
                      "baseline_mib": before_kb / 1024, "peak_mib": peak_kb / 1024,
                      "file_mib": Path(args.out).stat().st_size / 2**20,
                      "torch_threads": torch.get_num_threads()}))


def run_child(n: int, videos_dir: Path, out: Path, fps: float, backend: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--videos-dir",
               str(videos_dir), "--out", str(out), "--fps", str(fps), "--backend", backend]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"child for N={n} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[200, 2000])
    parser.add_argument("--workdir", type=Path, default=None, help="where videos and shards go "
                        "(default: a temporary folder, removed at the end unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--size", type=int, default=64, help="video width = height (pixels)")
    parser.add_argument("--seconds", type=float, default=4.0, help="video length")
    parser.add_argument("--video-fps", type=int, default=8)
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second (FramesConfig.fps)")
    parser.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav"))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--videos-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_extract_memory_"))
    try:
        start = time.perf_counter()
        make_videos(workdir / "videos", max(args.counts), args.size, args.seconds, args.video_fps)
        made = time.perf_counter() - start
        rows = [run_child(n, workdir / "videos", workdir / f"shard_{n}.h5", args.fps, args.backend) for n in args.counts]
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{max(args.counts)} videos of {args.seconds:g} s, {args.size}x{args.size} at {args.video_fps} fps, "
          f"written in {made:.1f} s; sampled at {args.fps:g} fps, backend {args.backend}; prvr-tiny-clip (random init); "
          f"torch threads {rows[0]['torch_threads']}")
    header = ("N videos", "seconds", "videos/s", "RSS before extraction (MiB)", "peak RSS (MiB)",
              "added by extraction (MiB)", "shard (MiB)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for row in rows:
        print(f"| {row['n']} | {row['seconds']:.1f} | {row['n'] / row['seconds']:.0f} | "
              f"{row['baseline_mib']:.0f} | {row['peak_mib']:.0f} | "
              f"{row['peak_mib'] - row['baseline_mib']:.1f} | {row['file_mib']:.1f} |")
    small, large = min(rows, key=lambda r: r["n"]), max(rows, key=lambda r: r["n"])
    if large["n"] > small["n"]:
        print(f"\npeak RSS ratio N={large['n']} / N={small['n']}: {large['peak_mib'] / small['peak_mib']:.3f} "
              f"({large['n'] / small['n']:.0f}x the videos)")


if __name__ == "__main__":
    main()
