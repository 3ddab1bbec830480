"""Benchmark: how fast `prvr index` builds an index of demo videos, by number of workers.

    .venv/bin/python -m bench.bench_index [--videos 60] [--workers 1 2]

Writes --videos videos of the demo corpus (prvr.demo.synthetic.generate_corpus with config/config.yaml's
corpus settings, as test videos), a model.pt of the demo's full method (config/config.yaml with
config/ablations/adaptive.yaml; untrained: indexing costs the same whatever the weights) and the tiny
CLIP with random weights, then indexes the videos into a fresh folder per --workers
(prvr.search.index_videos: decoding by time, CLIP, the model's video encoder, float16 shards). Prints a
markdown table with the machine: wall seconds, videos per second, bytes per video on disk, peak RSS.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from prvr.config import load_config, merge, to_dict
from prvr.config_sources import ablation_config
from prvr.demo.synthetic import generate_corpus
from prvr.features.clip import load_clip
from prvr.models import create_model
from prvr.provenance import machine
from prvr.search import index_videos

ROOT = Path(__file__).resolve().parents[1]


def setup(folder: Path, n_videos: int) -> tuple[Path, Path, Path]:
    """The videos, model.pt and CLIP weights in `folder`."""
    cfg = ablation_config(load_config(ROOT / "config/config.yaml"), ROOT / "config/ablations/adaptive.yaml")
    corpus = dataclasses.replace(cfg.corpus, n_train=0, n_val=0, n_test=n_videos)
    generate_corpus(corpus, folder / "corpus")
    torch.manual_seed(0)
    clip = load_clip(cfg.clip.model, None, allow_random=True)
    torch.save(clip.model.state_dict(), folder / "clip.pt")
    cfg = merge(cfg, {"clip": {"pretrained": str(folder / "clip.pt")}})
    torch.save({"config": to_dict(cfg), "model": create_model(cfg.model).state_dict(), "seed": 0}, folder / "model.pt")
    return folder / "corpus" / "videos", folder / "model.pt", folder / "clip.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']} ({info['cpu_capability']}), {info['cpu_cores']} cores, torch {info['torch']}; "
          f"{a.videos} demo videos\n")
    print("| workers | wall s | videos/s | KB per video on disk | peak RSS GB (this process) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        videos, model, clip = setup(Path(tmp), a.videos)
        for workers in a.workers:
            out = Path(tmp) / f"index{workers}"
            start = time.perf_counter()
            done = index_videos(videos, model, out, clip_weights=clip, workers=workers)
            wall = time.perf_counter() - start
            if done["indexed"] != a.videos:
                raise SystemExit(f"indexed {done['indexed']} of {a.videos} videos: {done['broken']}")
            size = sum(p.stat().st_size for p in out.iterdir())
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
            print(f"| {workers} | {wall:.1f} | {a.videos / wall:.2f} | {size / a.videos / 1024:.1f} | {rss:.2f} |",
                  flush=True)
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
