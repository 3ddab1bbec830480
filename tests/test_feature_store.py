"""HDF5 feature store (write, read, merge, errors) and extraction of video/text shards into it."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from prvr.config import FramesConfig
from prvr.video.decoding import VideoDecodeError
from prvr.store.feature_store import (FeatureCheck, FeatureError, FeatureStore, FeatureStoreError, UnknownIdError,
                                     merge_stores, write_features)
from prvr.errors import PrvrError
from prvr.features.clip import encode_text_tokens, load_clip
from prvr.features.extract import extract_text_features, extract_video_features, shards

VIDEOS = Path(__file__).parent / "data" / "videos"


def _features(rows, dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dim))


def test_round_trip_with_caption_ids(tmp_path):
    path = tmp_path / "feats.h5"
    items = [("vid1#enc#0", _features(7)), ("vid1#enc#1", _features(3, seed=1)), ("vid2", _features(5))]
    written = write_features(path, items, attrs={"model": "tiny", "fps": 2.0, "extra": {"a": 1}},
                             item_attrs=lambda _, a: {"eot_index": a.shape[0] - 1})
    assert written == 3
    with FeatureStore(path) as store:
        assert store.ids() == ["vid1#enc#0", "vid1#enc#1", "vid2"] and len(store) == 3
        assert "vid1#enc#1" in store and "vid3" not in store and "a/b" not in store
        x = store["vid1#enc#0"]
        assert x.dtype == np.float32 and x.shape == (7, 4)
        np.testing.assert_allclose(x, items[0][1].astype(np.float32))
        assert store.shape("vid2") == (5, 4) and store.dim == 4
        assert store.attrs["model"] == "tiny" and store.attrs["extra"] == '{"a": 1}'
        assert store.item_attrs("vid1#enc#1")["eot_index"] == 2


def test_unknown_id_is_a_one_line_key_error(tmp_path):
    path = tmp_path / "feats.h5"
    write_features(path, [("v1", _features(2))])
    with FeatureStore(path) as store, pytest.raises(KeyError) as info:
        store["v9#enc#0"]
    assert isinstance(info.value, UnknownIdError)
    assert str(info.value) == f"{path}: unknown feature id 'v9#enc#0'"


@pytest.mark.parametrize("bad_items, match", [([("a/b", _features(2))], "invalid feature id"),
                                              ([(".", _features(2))], "invalid feature id"),
                                              ([("v", _features(2)), ("v", _features(2))], "duplicate"),
                                              ([("v", np.zeros(3))], "2-D")])
def test_bad_items_leave_no_file(tmp_path, bad_items, match):
    path = tmp_path / "feats.h5"
    with pytest.raises(FeatureStoreError, match=match):
        write_features(path, bad_items)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_failing_producer_leaves_no_file(tmp_path):
    def items():
        yield "v1", _features(2)
        raise VideoDecodeError("x.mp4: corrupt")
    with pytest.raises(VideoDecodeError):
        write_features(tmp_path / "f.h5", items())
    assert list(tmp_path.iterdir()) == []


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(FeatureStoreError, match="not found"):
        FeatureStore(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(FeatureStoreError, match="not a readable HDF5"):
        FeatureStore(junk)


def test_merge_keeps_every_item_and_its_attributes(tmp_path):
    eot = lambda _, a: {"eot_index": a.shape[0] - 1}  # noqa: E731
    write_features(tmp_path / "s0.h5", [("a", _features(2)), ("b", _features(3))], {"model": "m"}, eot)
    write_features(tmp_path / "s1.h5", [("c#enc#0", _features(4))], {"model": "m"}, eot)
    count = merge_stores([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "all.h5")
    assert count == 3
    with FeatureStore(tmp_path / "all.h5") as merged, FeatureStore(tmp_path / "s1.h5") as shard:
        assert merged.ids() == ["a", "b", "c#enc#0"]
        np.testing.assert_array_equal(merged["c#enc#0"], shard["c#enc#0"])
        assert merged.item_attrs("c#enc#0")["eot_index"] == 3
        assert merged.attrs["model"] == "m" and merged.attrs["n_shards"] == 2


def test_merge_rejects_duplicates_and_mixed_dimensions(tmp_path):
    write_features(tmp_path / "s0.h5", [("a", _features(2))])
    write_features(tmp_path / "s1.h5", [("a", _features(2))])
    write_features(tmp_path / "s2.h5", [("z", _features(2, dim=8))])
    with pytest.raises(FeatureStoreError, match="'a' is in both .*s0.h5 and .*s1.h5"):
        merge_stores([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "all.h5")
    with pytest.raises(FeatureStoreError, match="feature dimension"):
        merge_stores([tmp_path / "s0.h5", tmp_path / "s2.h5"], tmp_path / "all.h5")
    assert not (tmp_path / "all.h5").exists()


def test_shards_cut_ids_in_order():
    assert shards(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError):
        shards(["a"], 0)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return load_clip("prvr-tiny-clip", None, batch_size=16, allow_random=True)


def test_extract_video_shard(tmp_path, encoder):
    paths = {"pancake": VIDEOS / "flipping_a_pancake.mkv", "short": VIDEOS / "decord_video_0.mov"}
    summary = extract_video_features(paths, encoder, FramesConfig(fps=1.0), tmp_path / "v.h5")
    assert summary == {"written": 2, "skipped": {}}
    with FeatureStore(tmp_path / "v.h5") as store:
        assert store.shape("pancake") == (10, 64) and store.shape("short") == (1, 64)
        assert store.attrs["clip_model"] == "prvr-tiny-clip" and store.attrs["kind"] == "video"
        assert store.attrs["image_size"] == 32 and np.isfinite(store["pancake"]).all()


def test_extract_video_corrupt_raises_or_is_skipped(tmp_path, encoder):
    paths = {"ok": VIDEOS / "decord_video_0.mov", "bad": VIDEOS / "decord_corrupted.mp4"}
    with pytest.raises(VideoDecodeError, match="decord_corrupted.mp4"):
        extract_video_features(paths, encoder, FramesConfig(), tmp_path / "v.h5")
    assert not (tmp_path / "v.h5").exists()
    summary = extract_video_features(paths, encoder, FramesConfig(), tmp_path / "v.h5", skip_errors=True)
    assert summary["written"] == 1 and list(summary["skipped"]) == ["bad"]
    with h5py.File(tmp_path / "v.h5") as f:
        assert list(f) == ["ok"] and "decord_corrupted.mp4" in f.attrs["skipped"]


def test_extract_text_tokens_with_eot_index(tmp_path, encoder, capsys):
    captions = {f"v{i}#enc#0": text for i, text in enumerate(
        ["a man flips a pancake", "a red ring moves left then stops", "dog", "a " * 100])}
    assert extract_text_features(captions, encoder, tmp_path / "t.h5") == 4
    # the 100-word caption is cut at the context: said in the log and recorded in the file
    assert "1 of 4 captions fill CLIP's 77-token context" in capsys.readouterr().err
    with FeatureStore(tmp_path / "t.h5") as store:
        assert store.attrs["captions_at_context_limit"] == 1
    expected = encode_text_tokens(encoder, list(captions.values()))
    with FeatureStore(tmp_path / "t.h5") as store:
        for caption_id, feats in zip(captions, expected):
            np.testing.assert_array_equal(store[caption_id], feats)
            assert store.item_attrs(caption_id)["eot_index"] == len(feats) - 1
        assert store.shape("v2#enc#0") == (3, 64)  # start, "dog", end-of-text
        assert store.shape("v3#enc#0") == (77, 64)  # truncated to the context length
        assert store.attrs["kind"] == "text" and store.attrs["context_length"] == 77


def test_feature_check_passes_good_arrays_through():
    check = FeatureCheck("video.h5", "video")
    good = np.ones((3, 4), np.float32)
    assert check("v0", good) is good
    assert check("v1", np.zeros((1, 4), np.float32)) is not None


@pytest.mark.parametrize("arrays, message", [
    ([("v0", np.zeros((0, 4)))], "video.h5: video 'v0' has 0 rows"),
    ([("v0", np.zeros(4))], "video.h5: video 'v0' has shape (4,), expected 2-D (rows, dimension)"),
    ([("v0", np.zeros((2, 4))), ("v1", np.zeros((2, 3)))],
     "video.h5: video 'v1' has dimension 3, expected 4 (first video 'v0')"),
    ([("v0", np.array([[0.0, 1.0], [2.0, np.nan], [np.inf, 0.0]]))], "video.h5: video 'v0': NaN in row 1"),
    ([("v0", np.array([[0.0, 1.0], [2.0, 3.0], [-np.inf, np.nan]]))], "video.h5: video 'v0': -inf in row 2"),
])
def test_feature_check_names_file_id_and_problem(arrays, message):
    check = FeatureCheck("video.h5", "video")
    with pytest.raises(FeatureError) as err:
        for item_id, array in arrays:
            check(item_id, array)
    assert str(err.value) == message
    assert isinstance(err.value, PrvrError) and "\n" not in str(err.value)
