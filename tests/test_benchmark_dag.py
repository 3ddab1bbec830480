"""The DAG of each benchmark configuration, selected by one key (`--config dataset=...`), as dry runs on
real annotation excerpts laid out where config/datasets/<name>.yaml expects them."""
import shutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANN = REPO / "tests/data/annotations"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

LAYOUT = {  # dataset -> {path in the working directory: excerpt}
    "tvr": {"data/tvr/tvr_train_release.jsonl": "tvr_val_excerpt.jsonl",
            "data/tvr/tvr_val_release.jsonl": "tvr_val_first200.jsonl"},
    "activitynet": {"data/activitynet/train.json": "activitynet_train_excerpt.json",
                    "data/activitynet/val_1.json": "activitynet_val_1_excerpt.json"},
    "charades": {"data/charades/charades_sta_train.txt": "charades_sta_train_excerpt.txt",
                 "data/charades/charades_sta_test.txt": "charades_sta_test_excerpt.txt"},
    "qvhighlights": {"data/qvhighlights/highlight_train_release.jsonl": "qvhighlights_train_excerpt.jsonl",
                     "data/qvhighlights/highlight_val_release.jsonl": "qvhighlights_val_excerpt.jsonl"},
}
# the authors' released QVHighlights features (a dry run needs the files to exist, not their content)
QVH_FEATURES = ("data/qvhighlights/FeatureData/qvhighlight_slowfast_clip.h5",
                "data/qvhighlights/TextData/qvhighlight_slowfast_clip_text.h5")


def _lay_out(workdir: Path, dataset: str) -> None:
    for dest, excerpt in LAYOUT[dataset].items():
        (workdir / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ANN / excerpt, workdir / dest)
    (workdir / "data/tvr/frames").mkdir(parents=True, exist_ok=True)
    (workdir / "data/charades").mkdir(parents=True, exist_ok=True)
    for csv in ("Charades_v1_train.csv", "Charades_v1_test.csv"):
        (workdir / "data/charades" / csv).write_text("id,length\n")
    if dataset == "qvhighlights":
        for name in QVH_FEATURES:
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_bytes(b"")


def _dry_run(workdir: Path, *config: str, cores: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--cores",
                           str(cores), "--config", *config], capture_output=True, text=True, timeout=300)


def _job_threads(dry_run_output: str, rule: str) -> list[int]:
    """The threads of each `rule` job a dry run lists (1 where it prints none)."""
    blocks = re.findall(rf"^rule {rule}:\n((?:[ \t]+.*\n?)*)", dry_run_output, re.M)  # its indented lines
    return [int(m.group(1)) if (m := re.search(r"threads: (\d+)", b)) else 1 for b in blocks]


@pytest.mark.parametrize("dataset, first_jobs", [
    ("tvr", {"benchmark_annotations", "video_list", "caption_file"}),
    ("activitynet", {"benchmark_annotations", "download_youtube", "video_list"}),
    ("charades", {"benchmark_annotations", "download_archive"}),
    ("qvhighlights", {"benchmark_annotations", "import_released", "caption_file"}),
])
def test_one_key_selects_a_benchmark(tmp_path, dataset, first_jobs):
    _lay_out(tmp_path, dataset)
    result = _dry_run(tmp_path, f"dataset={dataset}", "ablations=[baseline]", "seeds=[1]")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    jobs = {line.split()[1].rstrip(":") for line in result.stdout.splitlines()
            if line.startswith(("rule ", "localrule ", "checkpoint "))}
    assert first_jobs <= jobs and "generate_corpus" not in jobs and "pretrain_clip" not in jobs
    assert f"results/{dataset}/annotations/train.jsonl" in result.stdout


def test_released_features_skip_decoding(tmp_path):
    _lay_out(tmp_path, "tvr")
    for name in ("video.h5", "text.h5"):
        (tmp_path / "data/tvr" / name).write_bytes(b"")
    result = _dry_run(tmp_path, "dataset=tvr", "ablations=[baseline]", "seeds=[1]",
                      'data={"videos": "released_features", "released_video_h5": "data/tvr/video.h5", '
                      '"released_text_h5": "data/tvr/text.h5"}')
    assert result.returncode == 0, result.stderr[-3000:]
    assert "import_released" in result.stdout and "video_features_shard" not in result.stdout
    assert "text_features" not in result.stdout


def test_train_and_evaluate_jobs_get_the_cores_their_torch_uses(tmp_path):
    """A benchmark's train.num_threads 0 (torch's default, every core) gives its train and evaluate
    jobs the cores Snakemake was given: Snakemake sets OMP_NUM_THREADS to a job's threads, and with one
    thread (a rule without `threads:`) the TVR rehearsal trained at half speed on 2 cores. The demo's
    num_threads 1 keeps its jobs on one core each, side by side."""
    _lay_out(tmp_path, "tvr")
    for name in ("video.h5", "text.h5"):
        (tmp_path / "data/tvr" / name).write_bytes(b"")
    result = _dry_run(tmp_path, "dataset=tvr", "ablations=[baseline]", "seeds=[1]",
                      'data={"videos": "released_features", "released_video_h5": "data/tvr/video.h5", '
                      '"released_text_h5": "data/tvr/text.h5"}', cores=3)
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("train", "evaluate"):
        threads = _job_threads(result.stdout, rule)
        assert threads and set(threads) == {3}, (rule, threads)
    demo = _dry_run(tmp_path / "demo", "ablations=[baseline]", "seeds=[1]", cores=3)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert set(_job_threads(demo.stdout, "train")) == {1} and set(_job_threads(demo.stdout, "evaluate")) == {1}


def test_a_missing_benchmark_file_is_named(tmp_path):
    """Neither of ActivityNet's files is there: the run stops naming one (each split is converted from
    its own file, and Snakemake names the first missing input it meets)."""
    result = _dry_run(tmp_path, "dataset=activitynet")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Missing input files" in output and ("data/activitynet/train.json" in output
                                                or "data/activitynet/val_1.json" in output), output[-2000:]
