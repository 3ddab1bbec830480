"""`data.videos: released_bigfile`: MS-SL's BigFile folder (feature.bin, id.txt, shape.txt, video2frames.txt)
and RoBERTa caption HDF5 validated against every split and imported (prvr.sources.bigfile_release.import_bigfile_release),
then trained and evaluated by the DAG without decoding (the same run as tests/test_benchmark_run.py's
released-features test, on a generated BigFile folder)."""
import csv
import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from prvr.sources.bigfile_release import bigfile_layout, import_bigfile_release
from prvr.store.feature_store import FeatureError, FeatureStore, UnknownIdError
from test_benchmark_run import REPO, SNAKEMAKE, TINY, released_tvr

DIM = TINY["model"]["input_dim"]
TVR_VIDEO_DIM, TVR_TEXT_DIM = 3072, 768  # MS-SL's TVR release in the DAG run (model.input_dim, text_input_dim)


def write_bigfile(folder: Path, videos: dict[str, np.ndarray]) -> Path:
    """A BigFile folder as MS-SL writes it: rows of all videos interleaved (each video's frames in
    reverse), ids space-separated on one line, video2frames.txt a dict literal giving the frame order."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = sorted(((vid, k) for vid, feats in videos.items() for k in range(len(feats))), key=lambda f: (-f[1], f[0]))
    np.stack([videos[vid][k] for vid, k in frames]).astype("<f4").tofile(folder / "feature.bin")
    (folder / "id.txt").write_text(" ".join(f"{vid}_{k}" for vid, k in frames))
    (folder / "shape.txt").write_text(f"{len(frames)} {next(iter(videos.values())).shape[1]}\n")
    (folder / "video2frames.txt").write_text(str({vid: [f"{vid}_{k}" for k in range(len(f))] for vid, f in videos.items()}))
    return folder


def write_text(path: Path, captions: dict[str, np.ndarray]) -> Path:
    """RoBERTa caption features as MS-SL reads them: f[caption_id][...] -> (L, D) at the file's root."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for cid, feats in captions.items():
            f.create_dataset(cid, data=feats)
    return path


def _release(root: Path, dim=8, text_dim=8, extra_video=True):
    """Two splits of a tiny release in MS-SL's layout; returns bigfile_layout's paths and the arrays."""
    rng = np.random.default_rng(0)
    splits = {"train": ["va", "vb", "vc"], "val": ["vd", "ve"]}
    videos = {vid: rng.normal(size=(int(rng.integers(2, 7)), dim)).astype(np.float32)
              for vids in splits.values() for vid in vids}
    if extra_video:
        videos["unused"] = rng.normal(size=(3, dim)).astype(np.float32)
    paths = bigfile_layout(root, "tvr", "i3d_resnet", splits=tuple(splits))
    write_bigfile(paths["bigfile_dir"], videos)
    captions = {}
    for split, vids in splits.items():
        ids = [f"{vid}#enc#{k}" for vid in vids for k in range(2)]
        captions.update({c: rng.normal(size=(int(rng.integers(3, 9)), text_dim)).astype(np.float32) for c in ids})
        paths["caption_files"][split].parent.mkdir(parents=True, exist_ok=True)
        paths["caption_files"][split].write_text("".join(f"{c} caption {c}\n" for c in ids))
    write_text(paths["text_h5"], captions)
    return paths, videos, captions


def _import(paths, tmp_path, **kw):
    return import_bigfile_release(paths["bigfile_dir"], paths["text_h5"], paths["caption_files"],
                                  tmp_path / "v.h5", tmp_path / "t.h5", progress=False, **{"input_dim": 8, **kw})


def test_layout_is_ms_sl_rootpath(tmp_path):
    paths = bigfile_layout(tmp_path, "activitynet", "i3d")
    assert paths["bigfile_dir"] == tmp_path / "activitynet/FeatureData/i3d"
    assert paths["text_h5"] == tmp_path / "activitynet/TextData/roberta_activitynet_query_feat.hdf5"
    assert paths["caption_files"]["val"] == tmp_path / "activitynet/TextData/activitynetval.caption.txt"


def test_import_writes_frames_in_video_order_and_every_caption(tmp_path):
    paths, videos, captions = _release(tmp_path / "ms-sl")
    summary = _import(paths, tmp_path)
    assert (summary["videos"], summary["captions"], summary["unused_videos"]) == (5, 10, 1)
    assert summary["source"] == "released_bigfile" and (summary["video_dim"], summary["text_dim"]) == (8, 8)
    with FeatureStore(tmp_path / "v.h5") as store:
        assert sorted(store.ids()) == ["va", "vb", "vc", "vd", "ve"]  # the unused video is left out
        for vid in store.ids():
            assert np.array_equal(store[vid], videos[vid]), vid  # video2frames order, not feature.bin's
    with h5py.File(tmp_path / "t.h5") as text:
        assert set(text) == set(captions)
        assert np.array_equal(text["vb#enc#1"][()], captions["vb#enc#1"])
        assert text["vb#enc#1"].attrs["eot_index"] == len(captions["vb#enc#1"]) - 1


def test_bigfile_of_another_dimension_is_one_line_naming_the_folder(tmp_path):
    paths, _, _ = _release(tmp_path / "ms-sl", dim=12, text_dim=12)
    with pytest.raises(FeatureError) as info:
        _import(paths, tmp_path)
    message = str(info.value)
    assert message == (f"{paths['bigfile_dir']}: BigFile rows have dimension 12, but model.input_dim is 8 "
                       "(set it to the feature's dimension)")
    assert not (tmp_path / "v.h5").exists() and not (tmp_path / "t.h5").exists()


def test_roberta_dimension_other_than_the_video_is_named(tmp_path):
    """MS-SL's TVR pairs 3072-d I3D+ResNet rows with 768-d RoBERTa tokens: without
    model.text_input_dim the captions must have the frames' size, and the message names the key."""
    paths, _, _ = _release(tmp_path / "ms-sl", dim=8, text_dim=4)
    with pytest.raises(FeatureError) as info:
        _import(paths, tmp_path)
    assert str(info.value) == (f"{paths['text_h5']}: caption 'va#enc#0' has dimension 4, but model.text_input_dim "
                               "(unset: model.input_dim) is 8 (set model.text_input_dim to the caption features' "
                               "dimension)")
    with pytest.raises(FeatureError, match=r"dimension 4, but model.text_input_dim is 6 \(set"):
        _import(paths, tmp_path, text_input_dim=6)


def test_frames_and_captions_of_their_own_sizes_import(tmp_path):
    """The I3D family: frames and captions of different sizes (here 8 and 4) import with text_input_dim."""
    paths, videos, captions = _release(tmp_path / "ms-sl", dim=8, text_dim=4)
    summary = _import(paths, tmp_path, text_input_dim=4)
    assert (summary["video_dim"], summary["text_dim"]) == (8, 4)
    with h5py.File(tmp_path / "t.h5") as text:
        assert np.array_equal(text["va#enc#0"][()], captions["va#enc#0"])


def test_video_missing_from_video2frames_names_video_and_caption_file(tmp_path):
    paths, videos, _ = _release(tmp_path / "ms-sl")
    del videos["vd"]
    write_bigfile(tmp_path / "other", videos)
    for name in ("feature.bin", "id.txt", "shape.txt", "video2frames.txt"):
        (paths["bigfile_dir"] / name).write_bytes((tmp_path / "other" / name).read_bytes())
    with pytest.raises(UnknownIdError) as info:
        _import(paths, tmp_path)
    assert str(info.value) == f"{paths['bigfile_dir']}: video 'vd' (in tvrval.caption.txt) not found"


def test_nan_row_names_the_video_and_row(tmp_path):
    paths, videos, _ = _release(tmp_path / "ms-sl")
    videos["vc"][1, 3] = np.nan
    write_bigfile(paths["bigfile_dir"], videos)
    with pytest.raises(FeatureError, match=r"^.*i3d_resnet: video 'vc' row 1 has NaN$"):
        _import(paths, tmp_path)


def test_inf_in_a_caption_names_it(tmp_path):
    paths, _, captions = _release(tmp_path / "ms-sl")
    captions["ve#enc#1"][0, 0] = np.inf
    write_text(paths["text_h5"], captions)
    with pytest.raises(FeatureError, match=r"caption 've#enc#1' row 0 has inf$"):
        _import(paths, tmp_path)


def _tvr_release(work: Path) -> list[str]:
    """TVR annotation rows (30 train, 10 test videos) and their features as MS-SL's BigFile + RoBERTa."""
    data, vids, captions, videos = released_tvr(work)
    rng = np.random.default_rng(1)  # the real shapes of MS-SL's TVR release: I3D+ResNet 3,072, RoBERTa 768
    captions = {c: rng.standard_normal((len(f), TVR_TEXT_DIM)).astype(np.float32) for c, f in captions.items()}
    videos = {v: rng.standard_normal((len(f), TVR_VIDEO_DIM)).astype(np.float32) for v, f in videos.items()}
    write_text(data / "roberta_tvr_query_feat.hdf5", captions)
    write_bigfile(data / "i3d_resnet", videos)
    # DL-DKD's CLIP ViT-B/32 teacher in its layout: frames per video, one sentence vector per caption
    write_text(data / "new_clip_vit_32_tvr_vid_features.hdf5",
               {v: rng.standard_normal((len(f) // 2 + 1, 512)).astype(np.float32) for v, f in videos.items()})
    write_text(data / "clip_ViT_B_32_tvr_query_feat.hdf5",
               {c: rng.standard_normal((1, 512)).astype(np.float32) for c in captions})
    return vids


def _snakemake(work: Path, data: dict, *extra: str, rows=("ms_sl", "gmmformer_v1", "baseline", "dl_dkd", "adaptive")):
    """The tiny DAG on the BigFile release (with DL-DKD's teacher files where `data` names them)."""
    model = {**TINY["model"], "input_dim": TVR_VIDEO_DIM, "text_input_dim": TVR_TEXT_DIM}
    (work / "bigfile.yaml").write_text(json.dumps({**TINY, "model": model, "main_table": list(rows), "data": data}))
    cmd = [str(SNAKEMAKE), "results/ablation.csv", "results/main_table.csv", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
           "--configfile", str(work / "bigfile.yaml"), "--config", "dataset=tvr", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


BIGFILE_DATA = {"val_fraction": 0.2, "videos": "released_bigfile", "released_bigfile_dir": "data/tvr/i3d_resnet",
                "released_text_h5": "data/tvr/roberta_tvr_query_feat.hdf5",
                "teacher_video_h5": "data/tvr/new_clip_vit_32_tvr_vid_features.hdf5",
                "teacher_text_h5": "data/tvr/clip_ViT_B_32_tvr_query_feat.hdf5"}


def test_bigfile_release_trains_and_evaluates_without_decoding(tmp_path):
    vids = _tvr_release(tmp_path)
    proc = _snakemake(tmp_path, BIGFILE_DATA)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "import_bigfile" in proc.stderr and "video_features_shard" not in proc.stderr
    assert "pretrain_clip" not in proc.stderr and "import_released" not in proc.stderr
    table = list(csv.DictReader((tmp_path / "results/ablation.csv").open()))
    assert table[0]["configuration"] == "baseline" and 0 < float(table[0]["SumR"]) <= 400
    metrics = json.loads((tmp_path / "results/tvr/runs/baseline/seed1/metrics.json").read_text())
    assert metrics["n_videos"] == 10
    imported = set()
    splits = [p.stem for p in (tmp_path / "results/tvr/features/video").glob("*.h5")]
    assert sorted(splits) == ["test", "train", "val"]  # a split a job
    for split in splits:
        with h5py.File(tmp_path / f"results/tvr/features/video/{split}.h5") as store:
            imported |= set(store)
            assert store[next(iter(store))].shape[1] == TVR_VIDEO_DIM
        with h5py.File(tmp_path / f"results/tvr/features/text/{split}.h5") as store:
            assert store[next(iter(store))].shape[1] == TVR_TEXT_DIM
    assert imported == set(vids)
    run_config = metrics["provenance"]["config"]
    assert (run_config["model"]["input_dim"], run_config["model"]["text_input_dim"]) == (TVR_VIDEO_DIM, TVR_TEXT_DIM)
    # the main table: every method of the family (DL-DKD with its own CLIP teacher), each row named
    # I3D+RoBERTa, and the baselines' reported numbers (that family) compare with a row of their family
    assert "import_teacher" in proc.stderr
    rows = [r for r in csv.DictReader((tmp_path / "results/main_table.csv").open()) if r["dataset"] == "tvr"]
    reproduced = [r for r in rows if r["kind"] == "reproduced"]
    assert [r["configuration"] for r in reproduced] == ["ms_sl", "gmmformer_v1", "baseline", "dl_dkd", "adaptive"]
    dl_dkd = json.loads((tmp_path / "results/tvr/runs/dl_dkd/seed1/provenance.json").read_text())
    assert {"teacher_video", "teacher_text"} <= set(dl_dkd["inputs"])
    assert {r["features"] for r in reproduced} == {"I3D+RoBERTa (MS-SL's release)"}
    readme = next(r for r in rows if r["source"] == "MS-SL README")
    assert readme["features_match"] == "same family as trained here"


def test_dl_dkd_in_the_bigfile_family_is_refused_at_start(tmp_path):
    _tvr_release(tmp_path)
    no_teacher = {**BIGFILE_DATA, "teacher_video_h5": None, "teacher_text_h5": None}
    proc = _snakemake(tmp_path, no_teacher, "-n", rows=("baseline", "dl_dkd"))
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("prvr config error: ") and "dl_dkd distils from a CLIP teacher" in proc.stderr


def test_missing_bigfile_dir_stops_the_dag_with_one_line(tmp_path):
    _tvr_release(tmp_path)
    proc = _snakemake(tmp_path, {**BIGFILE_DATA, "released_bigfile_dir": None}, "-n")
    assert proc.returncode != 0
    assert proc.stderr.startswith("prvr config error: ")
    assert ("bigfile.yaml: data.released_bigfile_dir: data.videos 'released_bigfile' needs "
            "data.released_bigfile_dir") in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
