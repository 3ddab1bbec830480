"""The whole DAG on the tiny configuration: default target, outputs, provenance, report, lint, errors.

One module-scoped run (a few minutes on 2 cores) feeds most assertions here.
"""
import csv
import math
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests/data/tiny_config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir, *args, check=True):
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(TINY), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env={**os.environ, "PYTHONHASHSEED": "0"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A bare `snakemake` (no target) in a fresh working directory."""
    workdir = tmp_path_factory.mktemp("dag")
    snakemake(workdir)
    return workdir


def test_bare_snakemake_builds_the_ablation_table(run):
    rows = list(csv.DictReader((run / "results/ablation.csv").open()))
    assert [r["configuration"] for r in rows] == ["baseline"]
    assert rows[0]["seeds"] == "1"
    sumr = float(rows[0]["SumR"])
    parts = sum(float(rows[0][k]) for k in ("R@1", "R@5", "R@10", "R@100"))
    assert 0 < sumr <= 400 and abs(parts - sumr) < 0.02


def test_every_number_traces_back(run):
    run_dir = run / "results/demo/runs/baseline/seed1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    prov = metrics["provenance"]
    assert prov["seed"] == 1 and prov["config"]["model"]["hidden"] == 32
    assert set(prov["inputs"]) >= {"model", "captions", "video_feats", "text_feats"}
    assert all(len(v["sha256"]) == 64 for v in prov["inputs"].values())
    train_prov = json.loads((run_dir / "provenance.json").read_text())
    assert train_prov["config_sha256"] == prov["config_sha256"] and "source_sha256" in train_prov["code"]
    assert "train_captions" in train_prov["inputs"]
    sources = json.loads((run / "results/ablation.sources.json").read_text())
    assert sources == {"baseline": ["results/demo/runs/baseline/seed1/metrics.json"]}


def test_collapse_table_and_figures(run):
    """The default target also builds the collapse diagnostics: a CLIP-input reference row, one row
    per configuration, each traceable, and a t-SNE figure of each."""
    rows = list(csv.DictReader((run / "results/collapse.csv").open()))
    assert [r["configuration"] for r in rows] == ["clip_input", "baseline"]
    reference, baseline = rows
    assert reference["seeds"] == "" and reference["clip_hit"] == "" and baseline["seeds"] == "1"
    assert float(reference["text_teacher_corr"]) == 1.0  # the reference text vectors are the teacher
    for row in rows:
        for key in ("frame_hit", "frame_hit_chance", "text_sibling_pct", "text_same_kind_pct"):
            assert 0.0 <= float(row[key]) <= 1.0, (row["configuration"], key)
    assert 0.0 < float(baseline["clip_hit_chance"]) <= 1.0
    record = json.loads((run / "results/demo/runs/baseline/seed1/collapse.json").read_text())
    assert record["split"] == "test" and record["provenance"]["seed"] == 1
    assert set(record["provenance"]["inputs"]) >= {"model", "annotations", "event_labels"}
    sources = json.loads((run / "results/collapse.sources.json").read_text())
    assert sources["clip_input"] == ["results/demo/collapse/clip_input.json"]
    for name in ("clip_input", "baseline"):
        assert (run / f"results/figures/tsne_{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_main_table_and_side_by_side_figure(run):
    """The default target builds the paper's main table: a reproduced row per config main_table entry
    (the tiny run: 1 seed), the reported rows with sources and flags, cost columns, renderings; and
    the t-SNE figure of the baseline beside the full method."""
    rows = list(csv.DictReader((run / "results/main_table.csv").open()))
    sources = json.loads((run / "results/main_table.sources.json").read_text())
    reproduced = [r for r in rows if r["kind"] == "reproduced"]
    assert sorted(r["configuration"] for r in reproduced) == sorted(sources["trained"])  # method order
    assert {"baseline", "adaptive"} <= set(sources["trained"])
    assert sources["trained"]["baseline"] == ["results/demo/runs/baseline/seed1/metrics.json"]
    by_config = {r["configuration"]: r for r in reproduced}
    assert by_config["baseline"]["method"] == "GMMFormer v2" and by_config["adaptive"]["method"] == "MSC (this paper)"
    for row in reproduced:
        assert row["dataset"] == "demo" and row["n_seeds"] == "1" and row["tie_rule"] == "expected"
        assert 0 < float(row["SumR"]) <= 400 and float(row["params_M"]) > 0
        assert row["train_step_s"] == "not measured"  # no results/costs_demo.json in a fresh run
    assert float(by_config["adaptive"]["train_params_M"]) > float(by_config["adaptive"]["params_M"])  # CBVA head
    ms_sl = [r for r in rows if (r["dataset"], r["method"], r["source"]) == ("tvr", "MS-SL", "seed summary")]
    assert ms_sl and ms_sl[0]["SumR"] == "172.9" and "SumR 172.3" in ms_sl[0]["sources_disagree"]
    assert (run / "results/main_table.md").read_text().startswith("| dataset")
    assert "\\begin{tabular}" in (run / "results/main_table.tex").read_text()
    assert (run / "results/figures/tsne_compare.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "results/figures/tsne_compare.pdf").read_bytes()[:4] == b"%PDF"
    jobs = [r["job"] for r in csv.DictReader((run / "results/benchmarks.csv").open())]
    assert "train baseline seeds 1" in jobs and "pretrain_clip" in jobs  # config train_jobs: per_configuration


def test_unknown_main_table_row_is_named(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config", "main_table=[baseline,nosuch]", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config 'main_table' names 'nosuch'" in out


def test_tsne_with_too_few_captions_is_one_line_error(run, tmp_path):
    """One video's 3-4 captions are too few for t-SNE: the stage says so in one line."""
    cfg = tmp_path / "one_video.yaml"
    cfg.write_text("analysis: {tsne_videos: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "prvr.cli", "tsne", "--config", str(cfg), "--data",
                           str(run / "results/demo"), "--out", str(tmp_path / "t.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "t-SNE" in lines[0] and "demo_test_" in lines[0]
    assert not (tmp_path / "t.png").exists()


def test_features_follow_the_authors_layout(run):
    import h5py
    data = run / "results/demo"
    captions = (data / "captions/test.caption.txt").read_text().splitlines()
    assert captions and all("#enc#" in line.split(" ", 1)[0] for line in captions)
    sizes = {}
    for split in ("train", "val", "test"):  # a store per split, each holding that split's videos / captions only
        with h5py.File(data / f"features/video/{split}.h5") as fv, h5py.File(data / f"features/text/{split}.h5") as ft:
            sizes[split] = len(fv)
            ids = [line.split(" ", 1)[0] for line in (data / f"captions/{split}.caption.txt").read_text().splitlines()]
            assert sorted(ft) == sorted(ids) and sorted(fv) == sorted({c.split("#")[0] for c in ids})
    assert sizes == {"train": 24, "val": 8, "test": 10}
    with h5py.File(data / "features/video/test.h5") as fv, h5py.File(data / "features/text/test.h5") as ft:
        first = captions[0].split(" ", 1)[0]
        assert ft[first].ndim == 2 and ft[first].shape[0] <= 77
        assert fv[first.split("#")[0]].shape[1] == ft[first].shape[1]
    assert not list((data / "features").glob("shards/*.h5")), "shards are temporary"


def test_rules_log_and_rerun_has_nothing_to_do(run):
    assert (run / "logs/train/baseline.log").stat().st_size > 0  # one train job per configuration (train_jobs)
    assert (run / "benchmarks/train/baseline.tsv").exists()
    proc = snakemake(run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _jobs_to_run(run, *config):
    """Rule names a dry run with --config overrides would run (params changes count, as by default)."""
    proc = snakemake(run, "-n", "--quiet", "rules", "--config", *config)
    return proc.stdout + proc.stderr


def test_settings_rerun_exactly_the_rules_that_use_them(run):
    """Model-selection keys rerun training, t-SNE settings rerun the figures; neither reruns features."""
    jobs = _jobs_to_run(run, 'eval={"w_clip": 0.5}')
    assert "train" in jobs and "evaluate" in jobs and "video_features_shard" not in jobs
    jobs = _jobs_to_run(run, 'analysis={"tsne_seed": 7}')
    assert "tsne" in jobs and "train" not in jobs and "evaluate" not in jobs  # evaluate holds only analysis.split
    jobs = _jobs_to_run(run, 'eval={"batch_size": 64}')
    assert "train" not in jobs and "tsne" not in jobs


def test_report_is_generated(run):
    """The HTML report holds the tables (the main table among them), the t-SNE and curve figures and
    the rule benchmarks, with their captions (report() outputs)."""
    import base64
    snakemake(run, "--report", "report.html")
    html = (run / "report.html").read_text()
    assert len(html) > 10_000 and "Tables" in html and "Figures" in html and "Benchmarks" in html
    assert "ablation.csv" in html and "tsne_baseline.png" in html and "seed-paired SumR difference" in html
    assert "main_table.csv" in html and "The paper's main table" in html and "sources_disagree" in html
    assert "tsne_compare.png" in html and "curves_adaptive.png" in html and "benchmarks.csv" in html
    for table in ("ablation.csv", "main_table.csv"):
        table_b64 = base64.b64encode((run / "results" / table).read_bytes()).decode()
        assert table_b64[:40] in html  # the table itself is embedded, not only named


def test_curves_are_drawn_for_every_configuration(run):
    assert (run / "results/figures/curves_baseline.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "results/figures/curves_baseline.pdf").read_bytes()[:4] == b"%PDF"


def test_tables_have_markdown_and_latex_renderings(run):
    md = (run / "results/ablation.md").read_text()
    assert md.startswith("| configuration") and "baseline" in md
    assert "\\begin{tabular}" in (run / "results/collapse.tex").read_text()


def test_bad_config_value_fails_before_running(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config", "dataset=tvr2", check=False)
    assert proc.returncode != 0 and "tvr2" in proc.stdout + proc.stderr


def test_unknown_ablation_is_named(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config", "ablations=[nosuch]", check=False)
    assert proc.returncode != 0 and "nosuch" in proc.stdout + proc.stderr


def test_reference_name_is_reserved(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config", "ablations=[clip_input]", check=False)
    assert proc.returncode != 0 and "reserved" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


def test_corrupt_video_fails_its_rule_with_one_line(run, tmp_path):
    """A corrupt video in the corpus: the feature rule fails and says which file, in one line."""
    import shutil
    work = tmp_path / "copy"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns(".snakemake"))
    victim = work / "results/demo/videos/demo_test_0003.mp4"
    victim.write_bytes((REPO / "tests/data/videos/decord_corrupted.mp4").read_bytes())
    proc = snakemake(work, "--forcerun", "video_features_shard", "results/demo/features/video/test.h5", check=False)
    assert proc.returncode != 0
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.startswith("prvr error in rule")]
    assert lines and "video_features_shard" in lines[0] and "demo_test_0003.mp4" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_method_rows_and_table_target(run):
    """`snakemake results/ablation.csv` with the method's rows: reuses the features, trains only the new rows."""
    rows = "ablations=[baseline,adaptive,full_summary]"
    dry = snakemake(run, "-n", "results/ablation.csv", "--config", rows)
    jobs = dry.stdout + dry.stderr
    assert "generate_corpus" not in jobs and "text_features" not in jobs and "video_features_shard" not in jobs
    snakemake(run, "results/ablation.csv", "--config", rows)
    table = list(csv.DictReader((run / "results/ablation.csv").open()))
    assert [r["configuration"] for r in table] == ["baseline", "adaptive", "full_summary"]
    assert "Adaptive CBVA" in table[1]["description"]
    log = [json.loads(x) for x in (run / "results/demo/runs/adaptive/seed1/train_log.jsonl").read_text().splitlines()]
    assert {"tcpl_dist", "tcpl_angle", "cbva"} <= set(log[0]["loss"])
    log = [json.loads(x) for x in (run / "results/demo/runs/full_summary/seed1/train_log.jsonl").read_text().splitlines()]
    assert {"tcpl_kl", "cbva"} <= set(log[0]["loss"])


def test_a_replaced_or_deleted_video_is_noticed(run, tmp_path):
    """Snakemake dates the corpus folder by the folder alone: the merge's params carry a fingerprint of
    every listed video (name, size, modification time), so replacing or deleting one re-extracts the
    features, and a deleted one fails extraction naming it."""
    import shutil

    videos = sorted((run / "results/demo/videos").glob("*.mp4"))
    for video in videos[:4]:
        shutil.copy2(video, tmp_path / video.name)  # copy2 keeps the modification time to the nanosecond

    def reextracts() -> bool:
        return "merge_video_features" in snakemake(run, "-n", "results/ablation.csv").stdout

    assert not reextracts()
    try:
        shutil.copy(videos[1], videos[0])  # another video's content under video 0's name
        assert reextracts()
        shutil.copy2(tmp_path / videos[0].name, videos[0])
        assert not reextracts()  # the same file again: nothing to re-extract
        videos[3].unlink()
        assert reextracts()
        failed = snakemake(run, "results/demo/features/video/test.h5", check=False)
        assert failed.returncode != 0 and videos[3].stem in (failed.stdout + failed.stderr)
    finally:
        for video in videos[:4]:
            shutil.copy2(tmp_path / video.name, video)
    assert not reextracts()


def test_search_target_indexes_the_test_videos_with_the_full_method(run):
    """`snakemake results/search_agreement.json`: the test videos indexed with the last MSC row of
    main_table (prvr.search), and how often search finds each test caption's video and moment."""
    snakemake(run, "results/search_agreement.json")
    result = json.loads((run / "results/search_agreement.json").read_text())
    index = json.loads((run / "results/demo/search/index/index.json").read_text())
    assert index["model"]["path"].endswith("runs/adaptive/seed1/model.pt")
    test_videos = {json.loads(line)["vid_name"] for line in (run / "results/demo/annotations/test.jsonl").open()}
    assert result["videos"] == len(test_videos) and 0 <= result["R@1"] <= result["R@10"] <= 100
    assert 0 <= result["ratio 0.5"]["mean_iou"] <= 1 and "baseline" in result


def test_qualitative_figure_shows_both_models_on_queries_chosen_by_the_stated_rule(run):
    """`all` draws results/figures/qualitative.png/.pdf: the baseline's and the full method's top videos
    for the queries the caption's rule picks (largest rank disagreement, then seeded random ones)."""
    chosen = json.loads((run / "results/figures/qualitative.json").read_text())
    assert [c["why"] for c in chosen] == ["disagree"] * 3 + ["random"] * 2
    assert all(set(c["ranks"]) == {"baseline", "adaptive"} for c in chosen)
    gaps = [abs(math.log2(c["ranks"]["baseline"]) - math.log2(c["ranks"]["adaptive"])) for c in chosen]
    assert gaps[:3] == sorted(gaps[:3], reverse=True) and min(gaps[:3]) >= max(gaps[3:])
    assert (run / "results/figures/qualitative.png").stat().st_size > 0
    assert (run / "results/figures/qualitative.pdf").read_bytes().startswith(b"%PDF")
