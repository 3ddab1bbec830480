"""A benchmark configuration run for real at small size: `dataset=tvr` on real TVR annotation rows, with
its videos as 3 fps JPEG frame folders (TVR's released form; the images are generated here), through
conversion, the held-out val split, the video list checkpoint, frame-folder decoding, CLIP features,
training and evaluation to results/ablation.csv."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "tests/data/annotations/tvr_val_first200.jsonl"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TINY = {"seeds": [1], "ablations": ["baseline"],
        "data": {"val_fraction": 0.2},
        "frames": {"fps": 1.5, "shard_size": 16},
        "clip": {"model": "prvr-tiny-clip", "pretrained": None, "batch_size": 64,
                 "pretrain": {"n_pairs": 512, "epochs": 1, "batch_size": 128}},
        "model": {"input_dim": 64, "hidden": 32, "heads": 2, "frame_tokens": 8, "clip_tokens": 4,
                  "merging": {"stages": [6, 4]}},
        "loss": {"cbva": {"adaptive": {"segment_choices": [4, 3, 2]}}},
        "train": {"epochs": 2, "batch_size": 8, "early_stop": 2, "num_threads": 1}}


def _frames(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (36, 48, 3), dtype=np.uint8)).save(folder / f"{k + 1:05d}.jpg")


@pytest.fixture(scope="module")
def tvr_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tvr")
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    vids = list(dict.fromkeys(r["vid_name"] for r in rows))[:40]
    train, test = set(vids[:30]), set(vids[30:])
    data = work / "data/tvr"
    data.mkdir(parents=True)
    for name, keep in (("tvr_train_release.jsonl", train), ("tvr_val_release.jsonl", test)):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows if r["vid_name"] in keep))
    for i, vid in enumerate(vids):
        _frames(data / "frames" / vid, 6 + i % 4, i)
    (work / "tiny.yaml").write_text(json.dumps(TINY))
    cmd = [str(SNAKEMAKE), "results/ablation.csv", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
           "--configfile", str(work / "tiny.yaml"), "--config", "dataset=tvr"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, vids, train, test


def test_tvr_frame_folders_reach_the_table(tvr_run):
    work, vids, train, test = tvr_run
    table = list(csv.DictReader((work / "results/ablation.csv").open()))
    assert [r["configuration"] for r in table] == ["baseline"]
    assert table[0]["selection"] == "val" and table[0]["queries_not_evaluated"] == "0"
    assert 0 < float(table[0]["SumR"]) <= 400
    metrics = json.loads((work / "results/tvr/runs/baseline/seed1/metrics.json").read_text())
    assert metrics["n_videos"] == len(test) and metrics["selection"] == "val"


def test_val_is_held_out_of_train_and_features_follow_folder_time(tvr_run):
    work, vids, train, test = tvr_run
    split_vids = {s: {json.loads(l)["vid_name"] for l in (work / f"results/tvr/annotations/{s}.jsonl").read_text().splitlines()}
                  for s in ("train", "val", "test")}
    assert len(split_vids["val"]) == 6 and split_vids["train"] | split_vids["val"] == train
    assert split_vids["test"] == test
    assert (work / "results/tvr/videos.txt").read_text().split() == sorted(vids)
    with h5py.File(work / "results/tvr/features/video_feats.h5") as store:
        for i, vid in enumerate(vids):  # 6..9 images at 3 fps = 2..3 s, sampled at 1.5 fps: 3..4 frames
            assert store[vid].shape == (round((6 + i % 4) / 3.0 * 1.5), 64), vid


def run_dag(work: Path, config: dict, target: str, dataset: str) -> subprocess.CompletedProcess:
    """Snakemake on `target` in `work` with `config` as a --configfile and --config dataset=<dataset>;
    fails the test with the run's output tail when it fails."""
    (work / "run_config.yaml").write_text(json.dumps(config))
    cmd = [str(SNAKEMAKE), target, "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
           "--configfile", str(work / "run_config.yaml"), "--config", f"dataset={dataset}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def released_tvr(work: Path) -> tuple[Path, list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A released-features TVR at small size: the annotation rows of 40 videos (30 train, 10 test) in
    work/data/tvr, and random features (TINY's input_dim) of their captions (4..11 rows each, ids
    <vid>#enc#<k>) and videos (10..39 rows): (data dir, video ids, caption features, video features)."""
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    vids = list(dict.fromkeys(r["vid_name"] for r in rows))[:40]
    data = work / "data/tvr"
    data.mkdir(parents=True)
    for name, keep in (("tvr_train_release.jsonl", vids[:30]), ("tvr_val_release.jsonl", vids[30:])):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows if r["vid_name"] in keep))
    dim, rng = TINY["model"]["input_dim"], np.random.default_rng(0)
    counts: dict[str, int] = {}
    captions = {}
    for r in rows:
        if r["vid_name"] in vids:
            k = counts[r["vid_name"]] = counts.get(r["vid_name"], -1) + 1
            captions[f"{r['vid_name']}#enc#{k}"] = rng.standard_normal((int(rng.integers(4, 12)), dim)).astype(np.float32)
    videos = {v: rng.standard_normal((int(rng.integers(10, 40)), dim)).astype(np.float32) for v in vids}
    return data, vids, captions, videos


def test_released_features_train_and_evaluate_without_decoding(tmp_path):
    """data.videos: released_features with files in the authors' layout (root datasets per video id and
    per caption id): validated, imported, trained and evaluated; no frame is decoded, no CLIP is built."""
    data, vids, captions, videos = released_tvr(tmp_path)
    for path, feats in ((data / "text.h5", captions), (data / "video.h5", videos)):
        with h5py.File(path, "w") as f:
            for key, value in feats.items():
                f[key] = value
    released = {**TINY, "data": {"val_fraction": 0.2, "videos": "released_features",
                                 "released_video_h5": "data/tvr/video.h5", "released_text_h5": "data/tvr/text.h5"}}
    (tmp_path / "released.yaml").write_text(json.dumps(released))
    cmd = [str(SNAKEMAKE), "results/ablation.csv", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "--configfile", str(tmp_path / "released.yaml"), "--config", "dataset=tvr"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "import_released" in proc.stderr and "video_features_shard" not in proc.stderr
    assert "pretrain_clip" not in proc.stderr
    table = list(csv.DictReader((tmp_path / "results/ablation.csv").open()))
    assert table[0]["configuration"] == "baseline" and 0 < float(table[0]["SumR"]) <= 400
    with h5py.File(tmp_path / "results/tvr/features/video_feats.h5") as store:
        assert set(store) == set(vids)
