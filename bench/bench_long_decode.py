"""Benchmark: peak memory of decoding one long video whole against a piece at a time (prvr index on
long videos: prvr.search.encoding.STREAM_BATCHES).

    .venv/bin/python -m bench.bench_long_decode [--minutes 10 30] [--fps 2] [--size 224] [--backend auto]

Writes a synthetic H.264 video per length once (64 px, 8 fps, a moving square: cheap to decode, so
the table shows memory, not codec time), then, for each length and mode, decodes it in a fresh
subprocess at --fps frames per second resized to --size px: `whole` (prvr.video.decoding.decode_video,
every sampled frame in one array) or `pieces` (decode_video_chunks, --chunk frames at a time, each
piece dropped before the next, as the indexer drops it after CLIP). The child reports its wall time,
its peak RSS after the imports and its peak RSS at the end (resource.getrusage, ru_maxrss). Prints a
markdown table with the machine.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE, FPS = 64, 8  # the synthetic video's own frame size and rate


def make_video(path: Path, minutes: float) -> Path:
    """A `minutes`-long 64 px video of a square crossing a grey background; kept when there."""
    from prvr.demo.synthetic import write_mp4
    if path.exists():
        return path
    n = round(minutes * 60 * FPS)
    frames = np.full((n, SIZE, SIZE, 3), 96, np.uint8)  # (T, S, S, 3)
    for t in range(n):
        x = (t * 2) % (SIZE - 16)
        frames[t, 24:40, x:x + 16] = 220
    write_mp4(frames, FPS, path)
    return path


def child(args: argparse.Namespace) -> None:
    """Decode --video in --mode; print one JSON line."""
    from prvr.video.decoding import decode_video, decode_video_chunks
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    options = dict(fps=args.fps, size=args.size, backend=args.backend)
    if args.mode == "whole":
        n = len(decode_video(args.video, **options))
    else:
        n = sum(len(piece) for piece in decode_video_chunks(args.video, args.chunk, **options))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": n, "seconds": seconds, "before_mib": before / 1024, "peak_mib": peak / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--chunk", type=int, default=1024, help="frames a piece (4 CLIP batches of 256)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", choices=["whole", "pieces"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        return child(args)
    from prvr.provenance import machine
    from prvr.video.decoding import resolve_backend
    work = Path(args.workdir or tempfile.mkdtemp(prefix="prvr-long-decode-"))
    work.mkdir(parents=True, exist_ok=True)
    m = machine()
    print(f"machine: {m['cpu']}, {m['cpu_cores']} CPUs, torch {m['torch']}; backend {resolve_backend(args.backend)}; "
          f"{args.fps:g} fps at {args.size} px, pieces of {args.chunk} frames\n")
    print("| minutes | mode | frames | peak RSS before decoding (MiB) | peak RSS (MiB) | wall s |\n"
          "|---|---|---|---|---|---|")
    for minutes in args.minutes:
        video = make_video(work / f"long_{minutes:g}m.mp4", minutes)
        for mode in ("whole", "pieces"):
            cmd = [sys.executable, "-m", "bench.bench_long_decode", "--child", mode, "--video", str(video),
                   "--fps", str(args.fps), "--size", str(args.size), "--chunk", str(args.chunk),
                   "--backend", args.backend]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            cwd=Path(__file__).resolve().parents[1]).stdout.splitlines()[-1])
            print(f"| {minutes:g} | {mode} | {out['frames']} | {out['before_mib']:.0f} | {out['peak_mib']:.0f} "
                  f"| {out['seconds']:.1f} |")


if __name__ == "__main__":
    main()
