"""bench/bench_costs.py on the tiny shape: the file the main table reads (format, skipped rows, the
per-item extrapolation of the evaluation, parameter counts, the comparisons) and the table's use of it."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import bench_costs  # noqa: E402
from prvr.reporting.main_table import cost_cells, read_costs  # noqa: E402


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    out = tmp_path_factory.mktemp("costs") / "costs_tiny.json"
    bench_costs.main(["--shape", "tiny", "--configurations", "baseline", "adaptive", "nosuch", "--steps", "2",
                      "--warmup", "0", "--eval-fraction", "0.5", "--threads", "1", "--out", str(out)])
    return out


def test_file_names_shape_machine_and_scale(costs):
    result = json.loads(costs.read_text())
    assert result["shape"]["name"] == "tiny" and result["shape"]["hidden"] == 8
    assert result["shape"]["eval_videos"] == 12 and result["shape"]["eval_queries"] == 24
    assert {"cpu", "device_name", "threads", "torch"} <= set(result["machine"]) and result["machine"]["threads"] == 1
    assert result["scale"] == {"train_steps": 2, "warmup": 0, "eval_fraction": 0.5, "eval_extrapolated": True}
    assert result["configurations"]["nosuch"] == {"skipped": "no ablation file config/ablations/nosuch.yaml yet"}


def test_counts_and_times_are_measured(costs):
    from prvr.config_sources import ablation_config
    from prvr.losses import create_loss
    from prvr.models import create_model
    rows = json.loads(costs.read_text())["configurations"]
    cfg = ablation_config(bench_costs.base_config("tiny"), REPO / "config/ablations/adaptive.yaml")
    model = create_model(cfg.model)
    assert rows["adaptive"]["params"] == sum(p.numel() for p in model.parameters())
    assert rows["adaptive"]["loss_params"] == sum(p.numel() for p in create_loss(cfg.loss, hidden=8).parameters()) == 72
    assert rows["baseline"]["loss_params"] == 0  # no CBVA head
    for row in (rows["baseline"], rows["adaptive"]):
        assert 0 < row["train_step_fastest_s"] <= row["train_step_s"] and row["train_gflop"] > 0
        assert row["batch_videos"] == 4 and row["batch_queries"] == 8  # 2 captions per video
        modules = row["modules"]
        assert sum(m["params"] for k, m in modules.items() if k != "total") == modules["total"]["params"] == row["params"]


def test_evaluation_is_extrapolated_per_item(costs):
    """Half the split timed (6 of 12 videos, 12 of 24 queries): videos and queries scale by 2, the
    (queries x videos) scores by 4."""
    row = json.loads(costs.read_text())["configurations"]["baseline"]
    assert (row["eval_videos"], row["eval_queries"]) == (6, 12)
    expected = 2 * row["eval_videos_s"] + 2 * row["eval_queries_s"] + 4 * row["eval_scores_s"]
    assert row["eval_s"] == pytest.approx(expected)
    assert row["eval_measured_s"] == pytest.approx(row["eval_videos_s"] + row["eval_queries_s"] + row["eval_scores_s"])


def test_comparisons(costs):
    result = json.loads(costs.read_text())
    rows, comparison = result["configurations"], result["comparison"]
    vs = comparison["method_vs_baseline"]
    assert (vs["method"], vs["baseline"]) == ("adaptive", "baseline")
    assert vs["params"] == pytest.approx((rows["adaptive"]["params"] + 72) / rows["baseline"]["params"])
    assert vs["train_step_s"] == pytest.approx(rows["adaptive"]["train_step_s"] / rows["baseline"]["train_step_s"])
    modules = rows["adaptive"]["modules"]
    dual = comparison["dual_vs_frame_branch_only"]
    assert dual["params"] == pytest.approx(modules["clip_branch"]["params"]
                                           / (modules["total"]["params"] - modules["clip_branch"]["params"]))


def test_the_main_table_reads_it(costs):
    from prvr.provenance import sha256_file
    read = read_costs(costs)
    cells = cost_cells("adaptive", (100, 72), read, sha256_file(REPO / "config/ablations/adaptive.yaml"))
    assert cells["train_step_s"] == round(read["configurations"]["adaptive"]["train_step_s"], 3)
    assert "tiny shape" in cells["costs_measured_on"] and "1 threads" in cells["costs_measured_on"]
    assert cost_cells("nosuch", None, read, None)["eval_s"] == "not measured"
