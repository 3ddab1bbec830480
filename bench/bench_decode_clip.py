"""Benchmark: video decoding (decord vs ffmpeg CLI vs PyAV) and CLIP image encoding, in frames/s.

    .venv/bin/python -m bench.bench_decode_clip [--videos a.mp4 b.mkv] [--short-side 224] [--repeats 3]

Every decoder decodes every frame of the same file to RGB at the same output size (short side
`--short-side`, aspect kept); the best of `--repeats` runs is reported. CLIP rows time
`prvr.features.clip.encode_frames` (no_grad, batched) on random frames at the model's input size:
the demo's prvr-tiny-clip and, as a reference for real-size models, ViT-B-32 with random weights.
Prints a markdown table. Needs the `ffmpeg` binary on PATH for the ffmpeg row (skipped otherwise).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from prvr.video.decoding import _resized_dims, decode_video, video_info
from prvr.features.clip import encode_frames, load_clip

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "videos"
DEFAULT_VIDEOS = [FIXTURES / "v_GGSY1Qvo990.mp4", FIXTURES / "flipping_a_pancake.mkv"]


def decode_decord(path: Path, height: int, width: int) -> int:
    import decord
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
    return reader.get_batch(list(range(len(reader)))).asnumpy().shape[0]


def decode_ffmpeg(path: Path, height: int, width: int) -> int:
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={width}:{height}",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).shape[0]


def decode_pyav(path: Path, height: int, width: int) -> int:
    import av
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
            count += 1
    return count


def best_rate(fn, repeats: int) -> tuple[float, int]:
    """(frames per second of the fastest run, frames decoded)."""
    best, frames = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        frames = fn()
        best = min(best, time.perf_counter() - start)
    return frames / best, frames


def decode_rows(videos: list[Path], short_side: int, repeats: int) -> list[tuple[str, ...]]:
    decoders = {"decord": decode_decord, "PyAV": decode_pyav}
    if shutil.which("ffmpeg"):
        decoders["ffmpeg CLI (pipe)"] = decode_ffmpeg
    rows = []
    for path in videos:
        info = video_info(path)
        height, width = _resized_dims(info["height"], info["width"], short_side)
        for name, fn in decoders.items():
            rate, frames = best_rate(lambda: fn(path, height, width), repeats)
            rows.append((f"decode {name}", path.name, f"{info['width']}x{info['height']} -> {width}x{height}",
                         str(frames), f"{rate:.0f}"))
        for backend in ("decord", "pyav"):
            rate, frames = best_rate(lambda: len(decode_video(path, fps=2.0, size=short_side, backend=backend)),
                                     repeats)
            rows.append((f"prvr decode_video ({backend}), sampled 2 fps + crop", path.name,
                         f"-> {short_side}x{short_side}", str(frames), f"{rate:.0f}"))
    return rows


def clip_rows(repeats: int) -> list[tuple[str, ...]]:
    rows = []
    for name, n_frames, batch_size in (("prvr-tiny-clip", 2048, 256), ("ViT-B-32", 64, 32)):
        torch.manual_seed(0)
        encoder = load_clip(name, None, batch_size=batch_size, allow_random=True)
        size = encoder.image_size
        frames = np.random.default_rng(0).integers(0, 256, (n_frames, size, size, 3)).astype(np.uint8)
        encode_frames(encoder, frames[:batch_size])  # warm-up
        rate, _ = best_rate(lambda: len(encode_frames(encoder, frames)), repeats)
        rows.append((f"CLIP {name} (random init)", f"batch {batch_size}", f"{size}x{size}",
                     str(n_frames), f"{rate:.0f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = decode_rows(args.videos, args.short_side, args.repeats) + clip_rows(args.repeats)
    header = ("what", "input", "size", "frames", "frames/s")
    print(f"torch threads: {torch.get_num_threads()}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
