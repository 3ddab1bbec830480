"""`dataset=qvhighlights`: moment_detr's annotation files (a real excerpt) and generated features in the
authors' released layout at its real shapes (SlowFast+CLIP frames 2,816-d, CLIP text tokens 512-d),
imported, trained and evaluated by the DAG into the main table, each row named SlowFast+CLIP: the four
methods of its default main table, and DL-DKD too where teacher files in DL-DKD's layout are given."""
import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from test_benchmark_run import REPO, TINY, run_dag

ANN = REPO / "tests/data/annotations"
VIDEO_DIM, TEXT_DIM = 2816, 512  # their Datasets/builder.py for visual_feature 'clipsf'


def _release(work: Path) -> None:
    data = work / "data/qvhighlights"
    (data / "FeatureData").mkdir(parents=True)
    (data / "TextData").mkdir()
    shutil.copy(ANN / "qvhighlights_train_excerpt.jsonl", data / "highlight_train_release.jsonl")
    shutil.copy(ANN / "qvhighlights_val_excerpt.jsonl", data / "highlight_val_release.jsonl")
    rng = np.random.default_rng(0)
    rows = [json.loads(line) for name in ("train", "val")
            for line in (ANN / f"qvhighlights_{name}_excerpt.jsonl").read_text().splitlines()]
    counts: dict[str, int] = {}
    with h5py.File(data / "FeatureData/qvhighlight_slowfast_clip.h5", "w") as video, \
            h5py.File(data / "TextData/qvhighlight_slowfast_clip_text.h5", "w") as text:
        for row in rows:  # 2 s clips, as their features: 75 rows for a 150 s video
            if row["vid"] not in video:
                video[row["vid"]] = rng.standard_normal((int(row["duration"]) // 2, VIDEO_DIM)).astype(np.float32)
            k = counts[row["vid"]] = counts.get(row["vid"], -1) + 1
            text[f"{row['vid']}#enc#{k}"] = rng.standard_normal((int(rng.integers(6, 20)), TEXT_DIM)).astype(np.float32)
    with h5py.File(data / "FeatureData/teacher_vid.h5", "w") as video, \
            h5py.File(data / "TextData/teacher_query.h5", "w") as text:  # a CLIP ViT-B/32 teacher, DL-DKD's layout
        for row in rows:
            if row["vid"] not in video:
                video[row["vid"]] = rng.standard_normal((int(row["duration"]) // 2, 512)).astype(np.float32)
        for key in list(counts):
            for k in range(counts[key] + 1):
                text[f"{key}#{k}"] = rng.standard_normal((1, 512)).astype(np.float32)


def test_qvhighlights_builds_the_main_table_rows_of_all_five_methods(tmp_path):
    _release(tmp_path)
    config = {**TINY, "main_table": ["ms_sl", "gmmformer_v1", "baseline", "dl_dkd", "adaptive"],
              "model": {**TINY["model"], "input_dim": VIDEO_DIM, "text_input_dim": TEXT_DIM},
              "data": {"val_fraction": 0.25, "teacher_video_h5": "data/qvhighlights/FeatureData/teacher_vid.h5",
                       "teacher_text_h5": "data/qvhighlights/TextData/teacher_query.h5"}}
    proc = run_dag(tmp_path, config, "results/main_table.csv", "qvhighlights")
    assert "import_released" in proc.stderr and "pretrain_clip" not in proc.stderr
    rows = [r for r in csv.DictReader((tmp_path / "results/main_table.csv").open()) if r["kind"] == "reproduced"]
    assert [r["configuration"] for r in rows] == ["ms_sl", "gmmformer_v1", "baseline", "dl_dkd", "adaptive"]
    assert {r["dataset"] for r in rows} == {"qvhighlights"} and {r["features"] for r in rows} == {"SlowFast+CLIP"}
    metrics = json.loads((tmp_path / "results/qvhighlights/runs/adaptive/seed1/metrics.json").read_text())
    assert (metrics["n_videos"], metrics["n_queries"]) == (16, 16)  # the val release is the reported split
