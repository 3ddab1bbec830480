"""Config `checkpoints`: a release's own checkpoint is imported and evaluated by the DAG beside the
trained rows, as a main-table row "released checkpoint, evaluated here" (tie rule and selection stated).

The MS-SL checkpoint of tests/data/released_checkpoints (24-d frames, 20-d captions, written by MS-SL's
own code) on released-layout features of those sizes; MS-SL is also trained here on the same features."""
import csv
import json
from pathlib import Path

import h5py
import numpy as np

from test_benchmark_run import REPO, TINY, released_tvr, run_dag

CHECKPOINT = REPO / "tests/data/released_checkpoints/ms_sl_model.ckpt"
VIDEO_DIM, TEXT_DIM = 24, 20  # the checkpoint's input sizes


def _features(work: Path) -> None:
    data, vids, captions, videos = released_tvr(work)
    rng = np.random.default_rng(2)
    with h5py.File(data / "video.h5", "w") as f:
        for vid, feats in videos.items():
            f[vid] = rng.standard_normal((len(feats), VIDEO_DIM)).astype(np.float32)
    with h5py.File(data / "text.h5", "w") as f:
        for cid, feats in captions.items():
            f[cid] = rng.standard_normal((len(feats), TEXT_DIM)).astype(np.float32)


def test_a_released_checkpoint_is_a_main_table_row_evaluated_here(tmp_path):
    _features(tmp_path)
    config = {**TINY, "main_table": ["ms_sl"], "checkpoints": {"ms_sl": str(CHECKPOINT)},
              "model": {**TINY["model"], "input_dim": VIDEO_DIM, "text_input_dim": TEXT_DIM},
              "data": {"val_fraction": 0.2, "videos": "released_features", "released_video_h5": "data/tvr/video.h5",
                       "released_text_h5": "data/tvr/text.h5"}}
    proc = run_dag(tmp_path, config, "results/main_table.csv", "tvr")
    assert "import_checkpoint" in proc.stderr and "evaluate_checkpoint" in proc.stderr
    rows = [r for r in csv.DictReader((tmp_path / "results/main_table.csv").open()) if r["dataset"] == "tvr"]
    kinds = [(r["method"], r["kind"]) for r in rows if r["kind"] != "reported"]
    assert kinds == [("MS-SL", "reproduced"), ("MS-SL", "released checkpoint")]
    released = next(r for r in rows if r["kind"] == "released checkpoint")
    metrics = json.loads((tmp_path / "results/tvr/released/ms_sl/metrics.json").read_text())
    assert float(released["SumR"]) == metrics["metrics"]["SumR"] and 0 < float(released["SumR"]) <= 400
    assert released["source"] == "released checkpoint, evaluated here" and released["tie_rule"] == "expected"
    assert released["selection"].startswith("the release's own") and str(CHECKPOINT) in released["note"]
    assert metrics["imported_from"]["format"] == "ms_sl" and metrics["n_videos"] == 10
    ms_sl_readme = next(r for r in rows if r["source"] == "MS-SL README")
    assert ms_sl_readme["features_match"] == "other family: I3D+RoBERTa reported, CLIP-L/14 trained here"
