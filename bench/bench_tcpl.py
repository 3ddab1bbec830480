"""Benchmark: the TCPL "rkd" loss, forward + backward time and peak extra memory, Gram/chunked
implementation against the authors' (N, N, D) formulation.

    .venv/bin/python -m bench.bench_tcpl [--n 640] [--chunks 1 8 64] [--naive-n 128 256 384]
                                         [--dim 384] [--teacher-dim 768] [--threads 2] [--repeats 3]

Each row runs in its own subprocess (so one row's allocations cannot hide another's), with
`--threads` torch threads: random student (N, dim) with requires_grad and L2-normalised teacher
(N, teacher-dim), then one forward + backward to measure memory and `--repeats` more for time
(the median is printed). Peak extra memory = the process's resident-set high-water mark
(getrusage ru_maxrss, which sees torch's CPU allocations, unlike tracemalloc) minus its resident
set just before the first call, after the inputs exist. Prints a markdown table.
Rows: "angle" = the angle term alone; "tcpl" = distance + angle terms as TcplLoss computes them;
"naive angle" = the code's N x N x D difference tensors (prvr.losses.tcpl.naive_rkd_angle_loss).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import psutil
import torch
import torch.nn.functional as F

from prvr.losses.tcpl import naive_rkd_angle_loss, rkd_angle_loss, rkd_distance_loss


def loss_fn(kind: str, chunk: int):
    if kind == "angle":
        return lambda s, t: rkd_angle_loss(s, t, chunk)
    if kind == "tcpl":
        return lambda s, t: 15.0 * rkd_distance_loss(s, t) + 30.0 * rkd_angle_loss(s, t, chunk)
    return naive_rkd_angle_loss


def worker(kind: str, n: int, chunk: int, dim: int, teacher_dim: int, threads: int, repeats: int) -> dict:
    """Measure one row in this process; returns seconds (median) and peak extra MiB."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(n, dim, generator=gen).requires_grad_()
    teacher = F.normalize(torch.randn(n, teacher_dim, generator=gen), dim=-1)
    fn = loss_fn(kind, chunk)
    before = psutil.Process().memory_info().rss
    fn(student, teacher).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    times = []
    for _ in range(repeats):
        student.grad = None
        start = time.perf_counter()
        fn(student, teacher).backward()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "extra_mib": max(0, peak - before) / 2**20}


def run_row(args, kind: str, n: int, chunk: int) -> dict:
    command = [sys.executable, "-m", "bench.bench_tcpl", "--worker", kind, str(n), str(chunk),
               "--dim", str(args.dim), "--teacher-dim", str(args.teacher_dim),
               "--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=640, help="captions (the real TVR batch: 640)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--naive-n", type=int, nargs="*", default=[128, 256, 384])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--teacher-dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "N", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, n, chunk = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(kind, n, chunk, args.dim, args.teacher_dim, args.threads, args.repeats)))
        return
    rows = [("angle", args.n, c) for c in args.chunks] + [("tcpl", args.n, c) for c in args.chunks]
    rows += [("naive angle", n, 0) for n in args.naive_n] + [("angle", n, args.chunks[0]) for n in args.naive_n]
    print(f"TCPL rkd, forward + backward, student {args.dim}-d, teacher {args.teacher_dim}-d, "
          f"{args.threads} threads, median of {args.repeats}\n")
    print("| implementation | captions N | anchors per chunk | seconds | peak extra MiB |")
    print("|---|---|---|---|---|")
    for kind, n, chunk in rows:
        result = run_row(args, kind.split()[0] if kind != "naive angle" else "naive", n, chunk)
        chunk_text = str(chunk) if chunk else "-"
        print(f"| {kind} | {n} | {chunk_text} | {result['seconds']:.3f} | {result['extra_mib']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
