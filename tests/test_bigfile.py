"""MS-SL BigFile folders (feature.bin / id.txt / shape.txt / video2frames.txt): reading, errors, conversion."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from prvr.sources.bigfile import BigFile, BigFileError, bigfile_to_store
from prvr.store.feature_store import FeatureError, FeatureStore, UnknownIdError
from prvr.sources.released import validate_released
from prvr.errors import PrvrError

DIM = 6


def _videos(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"vid_b": rng.normal(size=(4, DIM)).astype(np.float32),
            "vid_a": rng.normal(size=(3, DIM)).astype(np.float32),
            "vid_c": rng.normal(size=(1, DIM)).astype(np.float32)}


def write_bigfile(folder: Path, videos: dict[str, np.ndarray]) -> Path:
    """A BigFile folder exactly as MS-SL's loader reads it, rows deliberately not in video order:
    rows are interleaved across videos and each video's frames are stored in reverse, so only
    video2frames.txt gives the frame order."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [(vid, k, feats[k]) for vid, feats in videos.items() for k in range(len(feats))]
    frames.sort(key=lambda f: (-f[1], f[0]))  # interleave, later frames first
    ids = [f"{vid}_{k}" for vid, k, _ in frames]
    np.stack([row for _, _, row in frames]).astype("<f4").tofile(folder / "feature.bin")
    (folder / "id.txt").write_text(" ".join(ids))  # MS-SL: space-separated, one line
    (folder / "shape.txt").write_text(f"{len(ids)} {DIM}\n")
    video2frames = {vid: [f"{vid}_{k}" for k in range(len(feats))] for vid, feats in videos.items()}
    (folder / "video2frames.txt").write_text(str(video2frames))  # a Python dict literal
    return folder


def test_round_trip_in_frame_order(tmp_path):
    videos = _videos()
    folder = write_bigfile(tmp_path / "i3d", videos)
    with BigFile(folder) as bf:
        assert bf.shape == (8, DIM) and bf.videos() == ["vid_b", "vid_a", "vid_c"] and len(bf) == 3
        assert "vid_a" in bf and "vid_z" not in bf
        for vid, feats in videos.items():
            x = bf.video_features(vid)
            assert x.dtype == np.float32 and x.shape == feats.shape
            np.testing.assert_array_equal(x, feats)
        assert bf.frame_ids("vid_a") == ["vid_a_0", "vid_a_1", "vid_a_2"] and bf.n_frames("vid_b") == 4
        np.testing.assert_array_equal(bf.row("vid_b_2"), videos["vid_b"][2])
        np.testing.assert_array_equal(bf.rows(["vid_c_0", "vid_a_1"]),
                                      np.stack([videos["vid_c"][0], videos["vid_a"][1]]))
        with pytest.raises(UnknownIdError, match=r"video2frames.txt: unknown video 'vid_z'$"):
            bf.video_features("vid_z")
        with pytest.raises(UnknownIdError, match=r"id.txt: unknown row id 'nope'$"):
            bf.row("nope")


def test_ids_split_on_any_whitespace(tmp_path):
    folder = write_bigfile(tmp_path / "f", _videos())
    ids = (folder / "id.txt").read_text().split(" ")
    (folder / "id.txt").write_text("\n".join(ids[:3]) + "\t" + "  ".join(ids[3:]) + "\n")
    with BigFile(folder) as bf:
        np.testing.assert_array_equal(bf.video_features("vid_a"), _videos()["vid_a"])


def test_conversion_to_store_equal(tmp_path):
    videos = _videos()
    folder = write_bigfile(tmp_path / "i3d", videos)
    out = tmp_path / "i3d.h5"
    assert bigfile_to_store(folder, out, progress=False) == 3
    with FeatureStore(out) as store:
        assert sorted(store.ids()) == sorted(videos) and store.dim == DIM
        for vid, feats in videos.items():
            np.testing.assert_array_equal(store[vid], feats)
        assert store.attrs["source"] == "bigfile" and store.attrs["source_rows"] == 8
    sub = tmp_path / "sub.h5"
    assert bigfile_to_store(folder, sub, video_ids=["vid_c"], progress=False) == 1
    with FeatureStore(sub) as store:
        assert store.ids() == ["vid_c"]
    with pytest.raises(UnknownIdError, match="unknown video 'nope'"):
        bigfile_to_store(folder, tmp_path / "bad.h5", video_ids=["vid_a", "nope"], progress=False)
    assert not (tmp_path / "bad.h5").exists()


def test_nan_row_named_on_conversion(tmp_path):
    videos = _videos()
    videos["vid_a"][2, 1] = np.nan
    folder = write_bigfile(tmp_path / "i3d", videos)
    with pytest.raises(FeatureError) as info:
        bigfile_to_store(folder, tmp_path / "out.h5", progress=False)
    assert str(info.value) == f"{folder}: video 'vid_a': NaN in row 2"
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("shape_text", ["8", "eight 6", "8 6 1", "", "8 0", "-1 6"])
def test_corrupt_shape_txt(tmp_path, shape_text):
    folder = write_bigfile(tmp_path / "f", _videos())
    (folder / "shape.txt").write_text(shape_text)
    with pytest.raises(BigFileError) as info:
        BigFile(folder)
    assert str(info.value).startswith(f"{folder / 'shape.txt'}: expected 'n_rows dim'") and "\n" not in str(info.value)


def test_shape_disagreeing_with_file_size(tmp_path):
    folder = write_bigfile(tmp_path / "f", _videos())
    data = (folder / "feature.bin").read_bytes()
    (folder / "feature.bin").write_bytes(data[:-10])
    with pytest.raises(BigFileError) as info:
        BigFile(folder)
    assert str(info.value) == (f"{folder / 'feature.bin'}: {len(data) - 10} bytes, but shape.txt says 8 x 6 "
                               f"float32 = {len(data)} bytes (truncated or wrong shape)")
    (folder / "feature.bin").write_bytes(data)
    (folder / "shape.txt").write_text("8 5\n")  # right row count, wrong dimension
    with pytest.raises(BigFileError, match="too long or wrong shape"):
        BigFile(folder)


def test_id_txt_problems(tmp_path):
    folder = write_bigfile(tmp_path / "f", _videos())
    ids = (folder / "id.txt").read_text().split()
    (folder / "id.txt").write_text(" ".join(ids[:-1]))
    with pytest.raises(BigFileError, match=r"id.txt: 7 ids, but shape.txt says 8 rows$"):
        BigFile(folder)
    (folder / "id.txt").write_text(" ".join(ids[:-1] + [ids[0]]))
    with pytest.raises(BigFileError, match=rf"id.txt: duplicate id '{ids[0]}' \(rows 0 and 7\)$"):
        BigFile(folder)


@pytest.mark.parametrize("missing", ["shape.txt", "id.txt", "feature.bin"])
def test_missing_file(tmp_path, missing):
    folder = write_bigfile(tmp_path / "f", _videos())
    (folder / missing).unlink()
    with pytest.raises(BigFileError, match=rf"{missing}: file not found"):
        BigFile(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(PrvrError, match="BigFile folder not found"):
        BigFile(tmp_path / "nope")


@pytest.mark.parametrize("text, match", [
    ("{'vid_a': ['vid_a_0', 'ghost']}", r"video 'vid_a': frame 'ghost' is not in id.txt"),
    ("{'vid_a': []}", r"video 'vid_a' has no frames"),
    ("{'vid_a': 'vid_a_0'}", r"video 'vid_a': expected a list of frame id strings"),
    ("['vid_a_0']", r"expected a dict"),
    ("{'vid_a': ['vid_a_0'", r"syntax error at line 1"),
    ("__import__('os').system('touch PWNED')", r"not a Python dict literal"),
])
def test_bad_video2frames(tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    folder = write_bigfile(tmp_path / "f", _videos())
    (folder / "video2frames.txt").write_text(text)
    with BigFile(folder) as bf, pytest.raises(BigFileError, match=match) as info:
        bf.video_features("vid_a")
    assert str(info.value).startswith(str(folder / "video2frames.txt")) and "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()  # parsed, never evaluated


def test_roberta_text_and_bigfile_video_validate(tmp_path):
    """MS-SL's pair: I3D BigFile video + RoBERTa text HDF5 keyed by caption id (its own dimension)."""
    videos = _videos()
    folder = write_bigfile(tmp_path / "FeatureData" / "i3d", videos)
    caption_file = tmp_path / "TextData" / "tvrval.caption.txt"
    caption_file.parent.mkdir()
    caption_file.write_text("vid_a#enc#0 a man walks\nvid_a#enc#1 he sits\nvid_c#enc#0 a door opens\n")
    text_h5 = tmp_path / "TextData" / "roberta_tvr_query_feat.hdf5"
    rng = np.random.default_rng(1)
    with h5py.File(text_h5, "w") as f:  # MS-SL: f[caption_id][...] -> (L, 1024); small dimension here
        for cid, length in [("vid_a#enc#0", 5), ("vid_a#enc#1", 3), ("vid_c#enc#0", 4)]:
            f.create_dataset(cid, data=rng.normal(size=(length, 10)).astype(np.float32))
    with FeatureStore(text_h5) as store:  # the layout is ours: read as it is
        assert store["vid_a#enc#1"].shape == (3, 10) and store.dim == 10
    summary = validate_released(folder, text_h5, {"val": caption_file}, video_dim=DIM, text_dim=10, progress=False)
    assert summary["videos"] == 2 and summary["captions"] == 3 and summary["unused_videos"] == 1
    assert (summary["video_dim"], summary["text_dim"]) == (DIM, 10)
    with pytest.raises(FeatureError, match=r"caption 'vid_a#enc#0' has dimension 10, expected 6 \(the video dimension"):
        validate_released(folder, text_h5, {"val": caption_file}, progress=False)
