"""validate_released / import_released on small files in the authors' (MSC_PRVR) exact layout."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from prvr.errors import AnnotationError
from prvr.store.feature_store import FeatureError, FeatureStore, FeatureStoreError, UnknownIdError
from prvr.sources.released import import_released, released_layout, validate_released
from prvr.errors import PrvrError

DIM = 8
SPLIT_VIDEOS = {"train": ["show_s01_clip_00", "show_s01_clip_01", "show_s01_clip_02"],
                "val": ["show_s02_clip_00", "show_s02_clip_01"],
                "test": ["show_s02_clip_00", "show_s02_clip_01"]}  # TVR: val and test are one file


def make_release(root: Path, collection="tvr", video_dtype=np.float32, text_dim=DIM, strip=None, extra=True):
    """The authors' tree: FeatureData/<c>_clip_L14.h5 (video id -> (n_frames, D) at the root),
    TextData/<c>_clip_L14.h5 (caption id -> (L, D) at the root), TextData/<c><split>.caption.txt.
    strip: the prefix the video keys drop (their ActivityNet file). Returns released_layout(...)."""
    paths = released_layout(root, collection)
    rng = np.random.default_rng(0)
    prefix = "v_" if collection == "activitynet" else ""
    for path in (paths["video_h5"], paths["text_h5"]):
        path.parent.mkdir(parents=True, exist_ok=True)
    videos, captions = {}, {}
    for split, vids in SPLIT_VIDEOS.items():
        lines = []
        for n, vid in enumerate(vids):
            vid = prefix + vid
            videos.setdefault(vid, rng.normal(size=(5 + n, DIM)))
            for k in range(2):
                cid = f"{vid}#enc#{k}"
                captions.setdefault(cid, rng.normal(size=(3 + k, text_dim)))
                lines.append(f"{cid} someone opens door {k} in {split}\n")
        paths["caption_files"][split].write_text("".join(lines))
    with h5py.File(paths["video_h5"], "w") as f:
        for vid, feats in videos.items():
            key = vid[len(strip):] if strip else vid
            f.create_dataset(key, data=feats.astype(video_dtype))
        if extra:
            f.create_dataset("unused_video", data=rng.normal(size=(2, DIM)).astype(video_dtype))
    with h5py.File(paths["text_h5"], "w") as f:
        for cid, feats in captions.items():
            f.create_dataset(cid, data=feats.astype(np.float32))
    return paths, videos, captions


def _edit(path, key, data=None):
    """Replace (or with data=None delete) one root dataset."""
    with h5py.File(path, "a") as f:
        del f[key]
        if data is not None:
            f.create_dataset(key, data=data)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_good_release_passes_with_counts(tmp_path, capsys):
    paths, videos, captions = make_release(tmp_path)
    summary = validate_released(**paths)  # progress bars on
    assert "videos tvr_clip_L14.h5" in capsys.readouterr().err
    assert {s: (v["videos"], v["captions"]) for s, v in summary["splits"].items()} == \
        {"train": (3, 6), "val": (2, 4), "test": (2, 4)}
    assert summary["videos"] == 5 and summary["captions"] == 10  # val and test share videos and captions
    assert (summary["video_dim"], summary["text_dim"]) == (DIM, DIM)
    assert summary["unused_videos"] == 1 and summary["unused_captions"] == 0
    assert summary["video_dtype"] == summary["text_dtype"] == "float32"
    assert summary["frames"] == {"min": 5, "max": 7, "mean": pytest.approx(5.8)}
    assert summary["tokens"]["min"] == 3 and summary["tokens"]["max"] == 4
    assert summary["splits"]["test"]["file"].endswith("tvrtest.caption.txt")
    assert validate_released(**paths, expected_dim=DIM, progress=False)["videos"] == 5


def test_layout_paths(tmp_path):
    paths = released_layout(tmp_path, "charades")
    assert paths["video_h5"] == tmp_path / "charades" / "FeatureData" / "charades_clip_L14.h5"
    assert paths["text_h5"] == tmp_path / "charades" / "TextData" / "charades_clip_L14.h5"
    assert paths["caption_files"]["val"] == tmp_path / "charades" / "TextData" / "charadesval.caption.txt"
    assert paths["video_prefix"] is None and released_layout(tmp_path, "activitynet")["video_prefix"] == "v_"


def test_missing_video_names_file_id_and_caption_file(tmp_path):
    paths, _, _ = make_release(tmp_path)
    _edit(paths["video_h5"], "show_s02_clip_01")
    with pytest.raises(UnknownIdError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == f"{paths['video_h5']}: video 'show_s02_clip_01' (in tvrval.caption.txt) not found"


def test_missing_video_only_in_test(tmp_path):
    paths, _, _ = make_release(tmp_path)
    paths["caption_files"]["test"].write_text("friends_s01e01_seg02_clip_00#enc#0 a man talks\n")
    with pytest.raises(UnknownIdError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == (f"{paths['video_h5']}: video 'friends_s01e01_seg02_clip_00' "
                               f"(in tvrtest.caption.txt) not found")


def test_missing_caption(tmp_path):
    paths, _, _ = make_release(tmp_path)
    _edit(paths["text_h5"], "show_s01_clip_02#enc#1")
    with pytest.raises(UnknownIdError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == (f"{paths['text_h5']}: caption 'show_s01_clip_02#enc#1' "
                               f"(in tvrtrain.caption.txt) not found")


def test_text_dimension_must_match_video(tmp_path):
    paths, _, _ = make_release(tmp_path, text_dim=6)
    with pytest.raises(FeatureError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info).startswith(f"{paths['text_h5']}: caption 'show_s01_clip_00#enc#0' has dimension 6, "
                                      f"expected 8 (the video dimension, first video 'show_s01_clip_00'")
    summary = validate_released(**paths, video_dim=DIM, text_dim=6, progress=False)  # e.g. QVHighlights clipsf
    assert (summary["video_dim"], summary["text_dim"]) == (DIM, 6)
    with pytest.raises(FeatureError, match=r"video 'show_s01_clip_00' has dimension 8, expected 6 \(expected_dim\)"):
        validate_released(**paths, expected_dim=6, progress=False)


def test_one_video_of_other_dimension(tmp_path):
    paths, _, _ = make_release(tmp_path)
    _edit(paths["video_h5"], "show_s01_clip_01", np.zeros((4, DIM + 1), np.float32))
    with pytest.raises(FeatureError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == (f"{paths['video_h5']}: video 'show_s01_clip_01' has dimension 9, expected 8 "
                               f"(first video 'show_s01_clip_00')")


def test_nan_in_video_row(tmp_path):
    paths, videos, _ = make_release(tmp_path)
    bad = videos["show_s02_clip_00"].astype(np.float32)
    bad[3, 2] = np.nan
    _edit(paths["video_h5"], "show_s02_clip_00", bad)
    with pytest.raises(FeatureError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == f"{paths['video_h5']}: video 'show_s02_clip_00' row 3 has NaN"


def test_inf_in_caption_row(tmp_path):
    paths, _, captions = make_release(tmp_path)
    bad = captions["show_s01_clip_01#enc#1"].astype(np.float32)
    bad[2, 0] = -np.inf
    _edit(paths["text_h5"], "show_s01_clip_01#enc#1", bad)
    with pytest.raises(FeatureError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == f"{paths['text_h5']}: caption 'show_s01_clip_01#enc#1' row 2 has -inf"


@pytest.mark.parametrize("store, key, data, match", [
    ("video_h5", "show_s01_clip_02", np.zeros((0, DIM), np.float32),
     r"video 'show_s01_clip_02' is empty \(shape \(0, 8\)\)$"),
    ("text_h5", "show_s02_clip_00#enc#0", np.zeros((0, DIM), np.float32),
     r"caption 'show_s02_clip_00#enc#0' is empty \(shape \(0, 8\)\)$"),
    ("text_h5", "show_s02_clip_00#enc#0", np.zeros(DIM, np.float32),
     r"caption 'show_s02_clip_00#enc#0' has shape \(8,\), expected 2-D"),
    ("video_h5", "show_s01_clip_01", np.zeros((3, DIM), np.int64), r"video 'show_s01_clip_01' has dtype int64"),
])
def test_bad_entries(tmp_path, store, key, data, match):
    paths, _, _ = make_release(tmp_path)
    _edit(paths[store], key, data)
    with pytest.raises(FeatureError, match=match) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info).startswith(f"{paths[store]}: ")


def test_group_instead_of_dataset(tmp_path):
    paths, _, _ = make_release(tmp_path)
    with h5py.File(paths["video_h5"], "a") as f:
        del f["show_s01_clip_00"]
        f.create_group("show_s01_clip_00").create_dataset("features", data=np.zeros((3, DIM)))
    with pytest.raises(FeatureError, match=r"video 'show_s01_clip_00' is a group, expected a dataset"):
        validate_released(**paths, progress=False)


def test_missing_files(tmp_path):
    paths, _, _ = make_release(tmp_path)
    paths["text_h5"].unlink()
    with pytest.raises(FeatureStoreError, match="feature file not found"):
        validate_released(**paths, progress=False)
    paths["caption_files"]["val"].unlink()
    with pytest.raises(AnnotationError, match=r"tvrval.caption.txt: file not found"):
        validate_released(**paths, progress=False)


def test_activitynet_keys_without_prefix(tmp_path):
    """Their ActivityNet video file drops 'v_' from the keys (loader reads f[video_id[2:]])."""
    paths, videos, captions = make_release(tmp_path, "activitynet", strip="v_")
    summary = validate_released(**paths, progress=False)
    assert summary["videos"] == 5 and summary["video_prefix"] == "v_"
    with pytest.raises(UnknownIdError) as info:
        validate_released(**{**paths, "video_prefix": None}, progress=False)
    assert _one_line(info) == (f"{paths['video_h5']}: video 'v_show_s01_clip_00' (in activitynettrain.caption.txt) "
                               f"not found; the file has 'show_s01_clip_00': pass video_prefix='v_' "
                               f"(the authors' ActivityNet layout)")
    _edit(paths["video_h5"], "show_s02_clip_01")
    with pytest.raises(UnknownIdError) as info:
        validate_released(**paths, progress=False)
    assert _one_line(info) == (f"{paths['video_h5']}: video 'show_s02_clip_01' (of 'v_show_s02_clip_01', "
                               f"in activitynetval.caption.txt) not found")


def test_import_writes_our_layout(tmp_path):
    paths, videos, captions = make_release(tmp_path, "activitynet", video_dtype=np.float16, strip="v_")
    out_v, out_t = tmp_path / "ours" / "video.h5", tmp_path / "ours" / "text.h5"
    summary = import_released(**paths, out_video_h5=out_v, out_text_h5=out_t, progress=False)
    assert summary["video_dtype"] == "float16" and summary["videos"] == 5 and summary["captions"] == 10
    with FeatureStore(out_v) as store:
        assert sorted(store.ids()) == sorted(videos)  # keys as in the caption files, unused entry dropped
        x = store["v_show_s01_clip_02"]
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, videos["v_show_s01_clip_02"].astype(np.float16).astype(np.float32))
        assert store.attrs["kind"] == "video" and store.attrs["source_dtype"] == "float16"
        assert store.attrs["video_prefix"] == "v_"
    with FeatureStore(out_t) as store:
        assert sorted(store.ids()) == sorted(captions)
        np.testing.assert_array_equal(store["v_show_s02_clip_00#enc#1"],
                                      captions["v_show_s02_clip_00#enc#1"].astype(np.float32))
        assert store.item_attrs("v_show_s02_clip_00#enc#1")["eot_index"] == 3


def test_failed_import_leaves_no_files(tmp_path):
    paths, _, captions = make_release(tmp_path)
    bad = captions["show_s02_clip_01#enc#0"].astype(np.float32)
    bad[0, 0] = np.nan
    _edit(paths["text_h5"], "show_s02_clip_01#enc#0", bad)
    out = tmp_path / "out"
    with pytest.raises(FeatureError, match=r"caption 'show_s02_clip_01#enc#0' row 0 has NaN"):
        import_released(**paths, out_video_h5=out / "v.h5", out_text_h5=out / "t.h5", progress=False)
    assert not (out / "t.h5").exists() and not (out / "v.h5").exists()
    with pytest.raises(PrvrError, match="would overwrite its own input"):
        import_released(**paths, out_video_h5=paths["video_h5"], out_text_h5=out / "t.h5", progress=False)
