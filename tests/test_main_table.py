"""The paper's main table: reproduced rows from hand-made metrics files (mean, std, seeds), reported rows
with their sources and the disagreement flag, the cost columns, reported.yaml's checks, renderings."""
import csv
import json
from pathlib import Path

import pytest
import torch

from prvr.errors import PrvrError
from prvr.reporting.main_table import (NOT_MEASURED, benchmark_table, count_parameters, load_reported,
                                       main_table, read_costs, write_main_table)
from prvr.reporting.renderings import render_table

REPO = Path(__file__).resolve().parents[1]
NAMES = ["R@1", "R@5", "R@10", "R@100", "SumR"]
REPORTED = """
methods:
  - {name: MS-SL, trained: ms_sl}
  - {name: PSVL, trained: null}
  - {name: GMMFormer v2, trained: baseline}
sources:
  seed: {label: seed summary, reference: the summary}
  readme: {label: MS-SL README, reference: https://example.org/ms-sl}
reported:
  tvr:
    MS-SL:
      seed: {R@1: 13.5, R@5: 32.2, R@10: 43.8, R@100: 83.4, SumR: 172.9}
      readme: {features: I3D+RoBERTa, R@1: 13.5, R@5: 32.1, R@10: 43.4, R@100: 83.4, SumR: 172.3}
    PSVL:
      seed: {SumR: 180.8, note: no code}
  activitynet:
    MS-SL:
      readme: {SumR: 140.1}
"""


def _metrics(path, seed, values, selection="val", ties="expected", left_out=0):
    path.write_text(json.dumps({
        "metrics": dict(zip(NAMES, values)), "selection": selection, "tie_rule": ties,
        "queries_without_video": left_out,
        "provenance": {"seed": seed, "config": {"clip": {"model": "ViT-L-14", "pretrained": "openai"}}}}))
    return path


def _reported(tmp_path, text=REPORTED):
    path = tmp_path / "reported.yaml"
    path.write_text(text)
    return load_reported(path)


@pytest.fixture
def runs(tmp_path):
    return {"baseline": [_metrics(tmp_path / "b1.json", 1, [10, 20, 30, 90, 150]),
                         _metrics(tmp_path / "b2.json", 2, [12, 22, 34, 92, 160])],
            "tcpl": [_metrics(tmp_path / "t1.json", 1, [5, 6, 7, 8, 26], left_out=3)]}


def test_reproduced_rows_mean_std_and_seeds(tmp_path, runs):
    frame = main_table(runs, _reported(tmp_path), dataset="tvr")
    rows = frame[frame["kind"] == "reproduced"].to_dict("records")
    assert [(r["method"], r["configuration"]) for r in rows] == [("GMMFormer v2", "baseline"), ("tcpl", "tcpl")]
    base = rows[0]
    assert base["n_seeds"] == 2 and base["seeds"] == "1 2" and base["SumR"] == 155.0 and base["R@1"] == 11.0
    assert base["R@10_std"] == pytest.approx(2.83, abs=0.005)  # sample std of 30 and 34
    assert base["selection"] == "val" and base["tie_rule"] == "expected" and base["source"] == "trained here"
    assert base["features"] == "CLIP-L/14 (extracted here, openai)" and base["queries_not_evaluated"] == "0"
    assert rows[1]["SumR_std"] == "" and rows[1]["queries_not_evaluated"] == "3"


def test_row_order_and_reported_rows(tmp_path, runs):
    frame = main_table(runs, _reported(tmp_path), dataset="tvr")
    order = list(zip(frame["dataset"], frame["method"], frame["kind"], frame["source"]))
    assert order == [("tvr", "MS-SL", "reported", "seed summary"), ("tvr", "MS-SL", "reported", "MS-SL README"),
                     ("tvr", "PSVL", "reported", "seed summary"), ("tvr", "GMMFormer v2", "reproduced", "trained here"),
                     ("tvr", "tcpl", "reproduced", "trained here"), ("activitynet", "MS-SL", "reported", "MS-SL README")]
    psvl = frame[frame["method"] == "PSVL"].iloc[0]
    assert psvl["SumR"] == 180.8 and psvl["R@1"] == "" and psvl["n_seeds"] == "" and psvl["note"].startswith("no code")
    # the demo: its own rows first, the reported rows of every benchmark after them
    assert list(main_table(runs, _reported(tmp_path), dataset="demo")["dataset"])[:2] == ["demo", "demo"]


def test_disagreeing_sources_are_flagged_both_ways(tmp_path, runs):
    frame = main_table(runs, _reported(tmp_path), dataset="tvr").set_index(["dataset", "method", "source"])
    assert frame.loc[("tvr", "MS-SL", "seed summary"), "sources_disagree"] == "MS-SL README: R@5 32.1, R@10 43.4, SumR 172.3"
    assert frame.loc[("tvr", "MS-SL", "MS-SL README"), "sources_disagree"] == "seed summary: R@5 32.2, R@10 43.8, SumR 172.9"
    assert frame.loc[("tvr", "PSVL", "seed summary"), "sources_disagree"] == ""
    assert frame.loc[("activitynet", "MS-SL", "MS-SL README"), "sources_disagree"] == ""  # one source only


def test_each_reported_row_says_whether_its_features_are_the_family_trained_here(tmp_path, runs):
    """MS-SL's README number is I3D+RoBERTa; the rows trained here are CLIP-L/14: not a comparison."""
    frame = main_table(runs, _reported(tmp_path), dataset="tvr").set_index(["dataset", "method", "source"])
    assert frame.loc[("tvr", "MS-SL", "MS-SL README"), "features_match"] == (
        "other family: I3D+RoBERTa reported, CLIP-L/14 trained here")
    assert frame.loc[("tvr", "MS-SL", "seed summary"), "features_match"] == "features not stated"
    assert frame.loc[("activitynet", "MS-SL", "MS-SL README"), "features_match"] == ""  # nothing trained there
    i3d = {"ms_sl": [tmp_path / "m.json"]}
    _metrics(i3d["ms_sl"][0], 1, [13, 32, 43, 83, 171])
    record = json.loads(i3d["ms_sl"][0].read_text())
    record["provenance"]["config"]["data"] = {"videos": "released_bigfile"}
    i3d["ms_sl"][0].write_text(json.dumps(record))
    frame = main_table(i3d, _reported(tmp_path), dataset="tvr").set_index(["dataset", "method", "source"])
    assert frame.loc[("tvr", "MS-SL", "trained here"), "features"] == "I3D+RoBERTa (MS-SL's release)"
    assert frame.loc[("tvr", "MS-SL", "MS-SL README"), "features_match"] == "same family as trained here"


def _costs(sha="abc"):
    return {"shape": {"name": "tvr"}, "scale": {"train_steps": 3, "eval_fraction": 0.1},
            "machine": {"device_name": "AMD EPYC", "threads": 2, "torch": "2.5"},
            "configurations": {"baseline": {"train_step_s": 14.41234, "eval_s": 269.04, "ablation_sha256": sha},
                               "ms_sl": {"skipped": "model not registered"}}}


def test_cost_columns(tmp_path, runs):
    reported = _reported(tmp_path)
    frame = main_table(runs, reported, "tvr", params={"baseline": (30_510_000, 150_000)}, costs=_costs(),
                       ablation_sha256={"baseline": "abc", "tcpl": "def"}).set_index("configuration")
    base = frame.loc["baseline"]
    assert (base["params_M"], base["train_params_M"], base["train_step_s"], base["eval_s"]) == (30.51, 30.66, 14.412, 269.0)
    assert "tvr shape" in base["costs_measured_on"] and "AMD EPYC, 2 threads" in base["costs_measured_on"]
    assert "extrapolated" in base["costs_measured_on"]  # eval timed on 10 % of the split
    assert frame.loc["tcpl", "train_step_s"] == NOT_MEASURED and frame.loc["tcpl", "params_M"] == ""
    changed = main_table(runs, reported, "tvr", costs=_costs(), ablation_sha256={"baseline": "other"})
    assert changed.set_index("configuration").loc["baseline", "eval_s"] == NOT_MEASURED
    absent = main_table(runs, reported, "tvr")
    assert set(absent[absent["kind"] == "reproduced"]["eval_s"]) == {NOT_MEASURED}


def test_written_table_and_renderings(tmp_path, runs):
    frame = main_table(runs, _reported(tmp_path), "tvr")
    out = tmp_path / "main_table.csv"
    write_main_table(frame, out, sources={"trained": {k: [str(p) for p in v] for k, v in runs.items()}})
    rows = list(csv.DictReader(out.open()))
    assert rows[3]["configuration"] == "baseline" and rows[3]["n_seeds"] == "2" and rows[3]["SumR"] == "155.0"
    assert rows[0]["n_seeds"] == "" and rows[0]["SumR"] == "172.9"
    assert json.loads((tmp_path / "main_table.sources.json").read_text())["trained"]["tcpl"] == [str(runs["tcpl"][0])]
    md, tex = render_table(out, caption="Main", mean_std=True)
    assert "155.0 ± 7.07" in md.read_text() and "SumR_std" not in md.read_text()
    assert r"155.0 $\pm$ 7.07" in tex.read_text()


def test_the_project_reported_file_loads():
    reported = load_reported(REPO / "config/reported.yaml")
    assert reported.method_of("adaptive") == "MSC (this paper)" and reported.method_of("baseline") == "GMMFormer v2"
    rows = {(r.dataset, r.method, r.source): r for r in reported.rows}
    assert rows[("tvr", "MS-SL", "seed_summary")].metrics["SumR"] == 172.9
    assert rows[("tvr", "MS-SL", "ms_sl_readme")].metrics["SumR"] == 172.3
    assert rows[("activitynet", "MSC (this paper)", "seed_summary")].metrics["SumR"] == 166.9
    assert {r.method for r in reported.rows} == {m.name for m in reported.methods}


@pytest.mark.parametrize("edit, message", [
    (("- {name: PSVL, trained: null}", "- {name: PSVL, trained: null, year: 1}"), r"methods\[1\]\.year: unknown key"),
    (("- {name: PSVL, trained: null}", "- {name: PSVL, trained: baseline}"), r"methods: trained repeated: \['baseline'\]"),
    (("    PSVL:\n", "    MGCN:\n"), r"reported\.tvr\.MGCN: unknown key"),
    (("  activitynet:", "  tvr2:"), r"reported\.tvr2: unknown key \(known: activitynet, charades, qvhighlights, tvr\)"),
    (("      seed: {SumR: 180.8, note: no code}", "      wiki: {SumR: 180.8}"), r"reported\.tvr\.PSVL\.wiki: unknown key"),
    (("R@5: 32.1,", "R@5: 132.1,"), r"reported\.tvr\.MS-SL\.readme\.R@5: expected a number in \[0, 100\], got 132\.1"),
    (("R@5: 32.1,", "R@5: high,"), r"\.R@5: expected a number in \[0, 100\], got 'high'"),
    (("SumR: 172.3}", "SumR: 175.3}"), r"readme\.SumR: 175\.3 is not R@1 \+ R@5 \+ R@10 \+ R@100 = 172\.4"),
    (("      readme: {SumR: 140.1}", "      readme: {R@1: 7.1}"), r"activitynet\.MS-SL\.readme\.SumR: missing"),
    (("R@1: 13.5, R@5: 32.1", "R@1: 33.5, R@5: 32.1"), r"readme: R@K must not decrease with K"),
    (("sources:", "sauces:"), r"sauces: unknown key"),
])
def test_malformed_reported_file_is_one_line_naming_file_and_key(tmp_path, edit, message):
    old, new = edit
    assert old in REPORTED
    with pytest.raises(PrvrError, match=message) as err:
        _reported(tmp_path, REPORTED.replace(old, new, 1))
    assert str(err.value).startswith(str(tmp_path / "reported.yaml")) and "\n" not in str(err.value)


def test_duplicate_key_in_reported_file(tmp_path):
    with pytest.raises(PrvrError, match="duplicate key 'seed'"):
        _reported(tmp_path, REPORTED.replace("      readme: {SumR: 140.1}", "      seed: {SumR: 1}\n      seed: {SumR: 2}"))


def test_bad_costs_and_metrics_files_are_one_line(tmp_path):
    bad = tmp_path / "costs.json"
    bad.write_text(json.dumps({"shape": {}, "machine": {}, "scale": {}, "configurations": {"a": {"eval_s": 1}}}))
    with pytest.raises(PrvrError, match=r"costs.json: not a bench_costs file .*configurations\.a\.train_step_s"):
        read_costs(bad)
    assert read_costs(_write(tmp_path / "ok.json", _costs()))["configurations"]["ms_sl"]["skipped"]
    with pytest.raises(PrvrError, match="m.json: not a metrics file"):
        main_table({"x": [_write(tmp_path / "m.json", {"metrics": {}})]}, _reported(tmp_path), "tvr")


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_count_parameters_from_a_checkpoint(tmp_path):
    """The model's parameters as built from the checkpoint's own config; the CBVA head (H x H + H)
    the loss owns in training is counted apart."""
    from prvr.config import Config, merge, to_dict
    from prvr.models import create_model
    cfg = merge(Config(), {"model": {"input_dim": 16, "hidden": 8, "heads": 2, "frame_tokens": 8, "clip_tokens": 4},
                           "loss": {"cbva": {"enabled": True, "head": "linear",
                                             "adaptive": {"segment_choices": [4, 3, 2]}}}})
    model = create_model(cfg.model)
    torch.save({"model": model.state_dict(), "config": to_dict(cfg), "seed": 1}, tmp_path / "model.pt")
    n_model, n_loss = count_parameters(tmp_path / "model.pt")
    assert n_model == sum(p.numel() for p in model.parameters()) and n_loss == 8 * 8 + 8
    with pytest.raises(PrvrError, match="missing.pt: model file not found"):
        count_parameters(tmp_path / "missing.pt")


def test_benchmark_table_reads_snakemake_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "a.tsv").write_text(header + "12.3456\t0:00:12\t714.1\t1\t1\t1\t0\t0\t36.5\t4.82\n")
    (tmp_path / "b.tsv").write_text(header + "1.0\t0:00:01\t-\t-\t-\t-\t-\t-\t-\t-\n")
    frame = benchmark_table({"train baseline seed 1": tmp_path / "a.tsv", "pretrain_clip": tmp_path / "b.tsv"})
    assert list(frame.columns) == ["job", "wall_s", "max_rss_MB", "cpu_s", "mean_load"]
    assert frame.iloc[0].tolist() == ["train baseline seed 1", 12.35, 714.1, 4.82, 36.5]
    assert frame.iloc[1].tolist() == ["pretrain_clip", 1.0, "", "", ""]
    (tmp_path / "c.tsv").write_text("nothing\n")
    with pytest.raises(PrvrError, match="c.tsv: not a Snakemake benchmark file"):
        benchmark_table({"x": tmp_path / "c.tsv"})


def test_seed_summary_rows_are_the_summary_tables():
    """Every seed_summary row of config/reported.yaml is the paper summary's main-table row (a copy of those
    tables is tests/data/paper/seed_summary_main_tables.txt), and every summary row is in the file."""
    import yaml
    tables, dataset = {}, None
    for line in (REPO / "tests/data/paper/seed_summary_main_tables.txt").read_text().splitlines():
        if "TVR" in line or "ActivityNet" in line:
            dataset = "tvr" if "TVR" in line else "activitynet"
        elif line and dataset and line.split()[-1].replace(".", "").isdigit():
            *name, r1, r5, r10, r100, sumr = line.split()
            method = "MSC (this paper)" if name == ["Ours"] else " ".join(name)
            tables[(dataset, method)] = dict(zip(("R@1", "R@5", "R@10", "R@100", "SumR"),
                                                 map(float, (r1, r5, r10, r100, sumr))))
    reported = yaml.safe_load((REPO / "config/reported.yaml").read_text())["reported"]
    in_yaml = {(d, m): {k: v for k, v in rows["seed_summary"].items() if k.startswith(("R@", "SumR"))}
               for d, methods in reported.items() for m, rows in methods.items() if "seed_summary" in rows}
    assert len(tables) == 12 and in_yaml == tables
