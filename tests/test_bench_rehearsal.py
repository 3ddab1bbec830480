"""bench/bench_rehearsal.py: the generated release has TVR's shapes in the authors' layout, and the DAG it
runs plans import, cache, training, evaluation and the tables (a dry run: the real one takes an hour)."""
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import h5py

from bench.bench_rehearsal import TVR, run_config, write_release

REPO = Path(__file__).resolve().parents[1]


def test_release_has_tvr_shapes_and_the_authors_layout(tmp_path):
    counts = write_release(tmp_path / "data/tvr", scale=0.001)
    videos = {s: round(TVR[s][0] * 0.001) for s in TVR}
    assert counts == {"videos": sum(videos.values()), "captions": 5 * sum(videos.values())}
    rows = [json.loads(line) for line in (tmp_path / "data/tvr/tvr_train_release.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * videos["train"]
    assert all(0 <= r["ts"][0] < r["ts"][1] <= r["duration"] for r in rows)
    with h5py.File(tmp_path / "data/tvr/FeatureData/tvr_clip_L14.h5") as fv, \
            h5py.File(tmp_path / "data/tvr/TextData/tvr_clip_L14.h5") as ft:
        assert len(fv) == counts["videos"] and len(ft) == counts["captions"]
        first = rows[0]["vid_name"]
        assert fv[first].shape[1] == 768 and 40 <= fv[first].shape[0] <= 140
        assert {f"{first}#enc#{k}" for k in range(5)} <= set(ft)


def test_the_rehearsal_dag_plans_every_stage(tmp_path):
    write_release(tmp_path / "data/tvr", scale=0.001)
    args = Namespace(ablation="adaptive", precision="bfloat16", eval_precision="float32", device="cpu")
    (tmp_path / "rehearsal.yaml").write_text(json.dumps(run_config(args)))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "results/ablation.csv", "results/collapse.csv",
                           "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--dry-run", "--configfile",
                           str(tmp_path / "rehearsal.yaml"), "--config", "dataset=tvr"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for rule in ("import_released", "feature_cache", "train", "evaluate", "ablation_table", "collapse_table"):
        assert f"rule {rule}:" in proc.stdout + proc.stderr, rule
    assert "video_features_shard" not in proc.stdout + proc.stderr
