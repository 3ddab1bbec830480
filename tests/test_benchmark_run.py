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
    for split, split_set in split_vids.items():  # a video list and a store per split, holding its videos only
        assert (work / f"results/tvr/video_lists/{split}.txt").read_text().split() == sorted(split_set)
        with h5py.File(work / f"results/tvr/features/video/{split}.h5") as store:
            assert set(store) == split_set
    for i, vid in enumerate(vids):  # 6..9 images at 3 fps = 2..3 s, sampled at 1.5 fps: 3..4 frames
        split = next(s for s, split_set in split_vids.items() if vid in split_set)
        with h5py.File(work / f"results/tvr/features/video/{split}.h5") as store:
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
    imported = set()
    for store_file in (tmp_path / "results/tvr/features/video").glob("*.h5"):  # a split a job, a store each
        with h5py.File(store_file) as store:
            assert imported.isdisjoint(store)
            imported |= set(store)
    assert imported == set(vids)


def _jobs_run(proc: subprocess.CompletedProcess) -> set[str]:
    """The rules Snakemake ran (its `rule X:` / `localrule X:` lines)."""
    import re
    return set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", proc.stdout + proc.stderr, re.M))


def test_an_edited_test_caption_reevaluates_and_retrains_nothing(tvr_run):
    """Every split has its own annotation table, video list, stores and feature cache: editing one caption
    of the benchmark's test file reconverts, re-encodes and re-evaluates the test split and keeps every
    trained model; an edited train caption does retrain (nothing stale is kept)."""
    import shutil
    work = tvr_run[0].with_name(tvr_run[0].name + "-edited")  # as deep as the original: the same relative
    shutil.copytree(tvr_run[0], work, symlinks=True)  # path to the checkout's ablation files (a job input)
    model = work / "results/tvr/runs/baseline/seed1/model.pt"
    kept = [model, *sorted((work / "results/tvr/cache").glob("*/train/index.json")),
            work / "results/tvr/features/video/train.h5", work / "results/tvr/features/text/train.h5"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept}
    metrics = work / "results/tvr/runs/baseline/seed1/metrics.json"
    evaluated = metrics.stat().st_mtime_ns
    source = work / "data/tvr/tvr_val_release.jsonl"  # the test split's file
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[0]["desc"] = "Someone edits this caption by hand."
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [str(SNAKEMAKE), "results/ablation.csv", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
           "--configfile", str(work / "tiny.yaml"), "--config", "dataset=tvr"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = _jobs_run(proc)
    assert {"benchmark_annotations", "text_features", "feature_cache", "evaluate"} <= ran, ran
    assert "train" not in ran and "video_features_shard" not in ran, ran
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == before
    assert metrics.stat().st_mtime_ns > evaluated
    assert "Someone edits this caption" in (work / "results/tvr/annotations/test.jsonl").read_text()
    source = work / "data/tvr/tvr_train_release.jsonl"  # and a train caption: retrains
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[0]["desc"] = "Someone edits a training caption."
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train" in _jobs_run(proc) and model.stat().st_mtime_ns > before[model][0]
