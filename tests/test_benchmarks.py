"""Benchmark files -> the pipeline's split tables: counts on real excerpts of TVR, ActivityNet Captions and
Charades-STA, the held-out val split, the selection protocol, bad lines named, and the dataset configs."""
import json
from pathlib import Path

import pytest

from prvr.config import load_config, merge
from prvr.config_data import DataConfig, SplitSource
from prvr.errors import AnnotationError
from prvr.sources.annotations import read_tvr_jsonl
from prvr.store.splits import read_caption_txt
from prvr.sources.benchmarks import benchmark_splits, held_out_videos, read_durations, write_benchmark_tables
from prvr.stages import video_list, write_captions

REPO = Path(__file__).resolve().parents[1]
ANN = REPO / "tests/data/annotations"


def _data(train, test, fmt, **kw):
    return DataConfig(train=SplitSource(str(train), fmt), test=SplitSource(str(test), fmt), videos="directory",
                      video_dir="v", **kw)


def _tvr_halves(tmp_path):
    """tvr_val_first200 cut into two files with disjoint videos (first-seen order)."""
    rows = [json.loads(line) for line in (ANN / "tvr_val_first200.jsonl").read_text().splitlines()]
    vids = list(dict.fromkeys(r["vid_name"] for r in rows))
    first = set(vids[:150])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows if r["vid_name"] in first))
    b.write_text("".join(json.dumps(r) + "\n" for r in rows if r["vid_name"] not in first))
    return a, b, rows, first


def test_tvr_tables_counts_and_held_out_val(tmp_path):
    a, b, rows, first = _tvr_halves(tmp_path)
    counts = write_benchmark_tables(_data(a, b, "tvr", val_fraction=0.2), "val", tmp_path / "out")
    n_train_rows = sum(r["vid_name"] in first for r in rows)
    assert counts["val"]["videos"] == 30 and counts["train"]["videos"] == 120 and counts["test"]["videos"] == 43
    assert counts["train"]["queries"] + counts["val"]["queries"] == n_train_rows
    assert counts["test"]["queries"] == len(rows) - n_train_rows
    tables = {s: read_tvr_jsonl(tmp_path / "out/annotations" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert not {q.vid for q in tables["train"]} & {q.vid for q in tables["val"]}
    assert tables["val"] and all(q.vid in held_out_videos([r["vid_name"] for r in rows if r["vid_name"] in first], 0.2)
                                 for q in tables["val"])
    listing = video_list([tmp_path / "out/annotations" / f"{s}.jsonl" for s in ("train", "val", "test")],
                         tmp_path / "out/videos.txt")
    assert listing == {"videos": 193, "listed": 193, "missing": 0}


def test_reported_split_protocol_keeps_every_train_video(tmp_path):
    a, b, rows, first = _tvr_halves(tmp_path)
    counts = write_benchmark_tables(_data(a, b, "tvr"), "reported_split", tmp_path / "out")
    assert counts["train"]["videos"] == 150 and counts["val"] == {"videos": 0, "queries": 0}


def test_held_out_choice_does_not_depend_on_order():
    vids = [f"v{i}" for i in range(100)]
    assert held_out_videos(vids, 0.1) == held_out_videos(vids[::-1] + vids, 0.1)
    assert len(held_out_videos(vids, 0.1)) == 10 and len(held_out_videos(vids[:3], 0.1)) == 1


def test_activitynet_tables_keep_sentence_indices(tmp_path):
    data = _data(ANN / "activitynet_train_excerpt.json", ANN / "activitynet_val_1_excerpt.json", "activitynet",
                 bad_spans="fix")
    counts = write_benchmark_tables(data, "reported_split", tmp_path)
    assert counts["train"] == {"videos": 20, "queries": 68} and counts["test"] == {"videos": 3, "queries": 8}
    raw = json.loads((ANN / "activitynet_train_excerpt.json").read_text())
    bad = sum(s > e or s < 0 or e > v["duration"] for v in raw.values() for s, e in v["timestamps"])
    assert counts["fixed_spans"] == {"train": bad, "test": 0}
    reversed_train = _data(ANN / "activitynet_train_reversed_span.json", ANN / "activitynet_val_1_excerpt.json",
                           "activitynet", bad_spans="fix")
    assert write_benchmark_tables(reversed_train, "reported_split", tmp_path)["fixed_spans"]["train"] == 1
    with pytest.raises(AnnotationError, match=r"v_0bosp4-pyTM' sentence 3: start 61.29 >= end 60.71"):
        write_benchmark_tables(_data(ANN / "activitynet_train_reversed_span.json",
                                     ANN / "activitynet_val_1_excerpt.json", "activitynet"), "val", tmp_path)
    write_captions(tmp_path / "annotations/test.jsonl", tmp_path / "test.caption.txt")
    ids = [cid for cid, _ in read_caption_txt(tmp_path / "test.caption.txt")]
    source = json.loads((ANN / "activitynet_val_1_excerpt.json").read_text())
    assert ids == [f"{vid}#enc#{k}" for vid, entry in source.items() for k in range(len(entry["sentences"]))]


def test_charades_needs_durations_and_reads_them(tmp_path):
    vids = {line.split()[0] for name in ("charades_sta_train_excerpt.txt", "charades_sta_test_excerpt.txt")
            for line in (ANN / name).read_text().splitlines()}
    csv = tmp_path / "Charades_v1.csv"  # generated: the real csv has these two columns among others
    csv.write_text("id,subject,length\n" + "".join(f"{v},x,60.0\n" for v in sorted(vids)))
    data = _data(ANN / "charades_sta_train_excerpt.txt", ANN / "charades_sta_test_excerpt.txt", "charades",
                 durations=(str(csv),))
    counts = write_benchmark_tables(data, "reported_split", tmp_path)
    assert counts["train"] == {"videos": 19, "queries": 40} and counts["test"]["queries"] == 12
    assert {q.duration for q in read_tvr_jsonl(tmp_path / "annotations/test.jsonl")} == {60.0}
    assert read_durations([csv])["3MSZA"] == 60.0
    empty = tmp_path / "empty.csv"
    empty.write_text("id,length\n")
    with pytest.raises(AnnotationError, match=r"no duration given for video"):
        benchmark_splits(_data(ANN / "charades_sta_train_excerpt.txt", ANN / "charades_sta_test_excerpt.txt",
                               "charades", durations=(str(empty),)), "val")


def test_malformed_line_and_shared_video_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = (ANN / "tvr_val_excerpt.jsonl").read_text().splitlines()
    bad.write_text("\n".join(lines[:2] + ['{"vid_name": "x", "duration": 5'] + lines[2:]) + "\n")
    with pytest.raises(AnnotationError, match=r"bad.jsonl:3: malformed JSON"):
        benchmark_splits(_data(bad, ANN / "tvr_val_excerpt.jsonl", "tvr"), "val")
    with pytest.raises(AnnotationError, match=r"video '.*' is also in train"):
        benchmark_splits(_data(ANN / "tvr_val_excerpt.jsonl", ANN / "tvr_val_excerpt.jsonl", "tvr"), "reported_split")


@pytest.mark.parametrize("name, source", [("tvr", "frame_folders"), ("activitynet", "youtube"),
                                          ("charades", "charades_archive")])
def test_dataset_configs_select_the_papers_settings(name, source):
    cfg = load_config(REPO / f"config/datasets/{name}.yaml")
    assert cfg.dataset == name and cfg.data.videos == source and cfg.clip.model == "ViT-L-14"
    assert (cfg.model.hidden, cfg.model.frame_tokens, cfg.model.merging.stages) == (384, 128, (80, 52, 32))
    assert cfg.loss.cbva.adaptive.threshold == (0.85 if name == "charades" else 0.8)
    assert cfg.loss.margin == (0.1 if name == "tvr" else 0.2) and cfg.train.batch_size == 128
    with pytest.raises(Exception, match=r"data.video_dir: data.videos 'directory' needs data.video_dir"):
        merge(cfg, {"data": {"videos": "directory", "video_dir": None}})


def test_qvhighlights_is_the_authors_fourth_dataset_on_their_released_features(tmp_path):
    """Their src/Configs/qvhighlight.py and README command; moment_detr's files as the splits (a real
    excerpt), the val release reported, each query's earliest window its span."""
    cfg = load_config(REPO / "config/datasets/qvhighlights.yaml")
    assert cfg.data.videos == "released_features" and cfg.data.feature_family == "SlowFast+CLIP"
    assert (cfg.model.input_dim, cfg.model.text_input_dim, cfg.model.dropout, cfg.model.fusion_temperature) == (
        2816, 512, 0.31, 0.6)
    assert (cfg.loss.margin, cfg.loss.cbva.adaptive.threshold, cfg.train.lr, cfg.eval.w_clip) == (0.2, 0.7, 2.5e-4, 0.4)
    assert cfg.data.test.path.endswith("highlight_val_release.jsonl")
    data = _data(ANN / "qvhighlights_train_excerpt.jsonl", ANN / "qvhighlights_val_excerpt.jsonl", "qvhighlights",
                 val_fraction=0.25)
    counts = write_benchmark_tables(data, "val", tmp_path / "out")
    assert counts["test"] == {"videos": 16, "queries": 16}
    assert counts["train"]["videos"] + counts["val"]["videos"] == 24
    rows = [json.loads(line) for line in (ANN / "qvhighlights_val_excerpt.jsonl").read_text().splitlines()]
    several = next(r for r in rows if len(r["relevant_windows"]) > 1)
    test = {q.desc_id: q for q in read_tvr_jsonl(tmp_path / "out/annotations/test.jsonl")}
    earliest = min(several["relevant_windows"])
    assert (test[several["qid"]].start, test[several["qid"]].end) == tuple(map(float, earliest))
    with pytest.raises(AnnotationError, match=r"qvhighlights_test_excerpt.jsonl:1: no relevant_windows"):
        benchmark_splits(_data(ANN / "qvhighlights_train_excerpt.jsonl", ANN / "qvhighlights_test_excerpt.jsonl",
                               "qvhighlights"), "val")


@pytest.mark.parametrize("train_videos, test_videos, missing, message", [
    (0, 3, [], "the train split has 0 video(s); training needs at least 2"),
    (1, 3, [], "the train split has 1 video(s); training needs at least 2"),
    (3, 3, ["t0", "t1"], "the train split has 1 video(s) (2 more could not be fetched); training needs at least 2"),
    (3, 2, ["e0", "e1"], "the test split has 0 video(s) (2 more could not be fetched); an evaluation needs at least 1"),
])
def test_a_split_too_small_to_train_or_test_stops_the_video_list(tmp_path, train_videos, test_videos, missing,
                                                                message):
    """Before any video is decoded (every feature shard waits for videos.txt), not at training."""
    def table(name, prefix, n):
        rows = [{"vid_name": f"{prefix}{i}", "duration": 10, "ts": [1, 2], "desc": "a person", "desc_id": i}
                for i in range(n)]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    files = [table("train", "t", train_videos), table("val", "v", 0), table("test", "e", test_videos)]
    tsv = tmp_path / "missing.tsv"
    tsv.write_text("video_id\treason\n" + "".join(f"{v}\tgone\n" for v in missing))
    with pytest.raises(AnnotationError) as info:
        video_list(files, tmp_path / "videos.txt", tsv if missing else None)
    split = "train" if "train split" in message else "test"
    assert str(info.value) == f"{tmp_path / split}.jsonl: {message}"
    assert not (tmp_path / "videos.txt").exists()
    video_list([table("train", "t", 2), files[1], table("test", "e", 1)], tmp_path / "videos.txt")  # the fewest
