"""`prvr <stage>`: bad input gives one line on stderr and exit status 1, never a traceback."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prvr(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "prvr.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_lists_every_stage():
    out = prvr("--help").stdout
    for stage in ("corpus", "captions", "pretrain-clip", "video-features", "merge-features", "text-features",
                  "train", "evaluate", "collapse", "tsne", "table"):
        assert stage in out


def test_malformed_annotation_line_is_one_line_error(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"vid_name": "v1", "duration": 10, "ts": [1, 2], "desc": "a", "desc_id": 1}\n{"vid_name": \n')
    proc = prvr("captions", bad, tmp_path / "out.txt")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prvr: error: ") and f"{bad}:2" in lines[0]
    assert not (tmp_path / "out.txt").exists()


def test_bad_config_is_one_line_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: fast\n")
    proc = prvr("corpus", "--config", cfg, "--out", tmp_path / "d")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"prvr: error: {cfg}: train.lr: expected float, got 'fast'"


def test_missing_metrics_file_in_table(tmp_path):
    proc = prvr("table", "--row", "baseline", tmp_path / "nope.json", "--out", tmp_path / "t.csv")
    assert proc.returncode == 1 and "metrics file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_collapse_on_missing_data_is_one_line_error(tmp_path):
    proc = prvr("collapse", "--data", tmp_path, "--out", tmp_path / "c.json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "test.caption.txt" in lines[0]
    assert not (tmp_path / "c.json").exists()


def test_features_without_weights_is_one_line_error(tmp_path):
    """clip.pretrained null (the demo config) and no --weights: refuse to encode with a random CLIP."""
    captions = tmp_path / "train.caption.txt"
    captions.write_text("v1#enc#0 a man flips a pancake\n")
    proc = prvr("text-features", "--captions", captions, "--out", tmp_path / "t.h5")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "clip.model 'prvr-tiny-clip': no weights" in lines[0]
    assert not (tmp_path / "t.h5").exists()


def test_check_config_names_the_yaml_file_snakemake_does_not(tmp_path):
    """Snakemake parses a --configfile before the workflow's checks and its YAML error names no file;
    `prvr check-config` reads the same sources and names the file and the line."""
    bad = tmp_path / "my.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    proc = prvr("check-config", "--configfile", bad)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"prvr: error: {bad}: invalid YAML at line 3"


def test_check_config_reads_pairs_and_files_as_the_workflow_does(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("seeds: [4, 5]\n")
    second.write_text("ablations: [baseline, tcpl]\n")
    proc = prvr("check-config", "--configfile", first, "--configfile", second, "dataset=charades")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("config ok: dataset charades, ") and "seeds [4, 5]" in proc.stdout
    proc = prvr("check-config", "--configfile", first, 'train={"epochs": 0}')
    assert proc.returncode == 1
    assert proc.stderr.strip() == "prvr: error: --config: train.epochs: must be >= 1, got 0"
    second.write_text("ablations: [no_such_row]\n")
    proc = prvr("check-config", "--configfile", second)
    assert proc.returncode == 1 and "no_such_row.yaml: no such ablation file" in proc.stderr
