"""The resampled float16 feature cache (prvr.store.feature_cache): round trip against the store path,
stale caches refused, bad entries named, datasets read from it, training from it.
Run: .venv/bin/python -m pytest tests/test_feature_cache.py -q
"""
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from prvr.store import feature_cache as fc
from prvr.data.dataset import PRVRDataset, collate_videos
from prvr.store.resample import resample_frames
from prvr.store.feature_cache import (CacheError, FeatureCache, StaleCacheError, build_feature_cache,
                                     open_cache)
from prvr.store.feature_store import FeatureError, UnknownIdError, write_features

DIM = 8


def _corpus(root, lengths=(3, 9, 14, 6, 5, 11, 1), caption_lengths=(4, 12, 2, 9)):
    """Two splits (train: v0..v3, val: v4..v6), one store of each kind; caption k of a video has
    caption_lengths[k % 4] tokens, so some are longer than the max_query_len of 8 used below."""
    rng = np.random.default_rng(0)
    videos = {f"v{i}": rng.normal(size=(n, DIM)).astype(np.float32) for i, n in enumerate(lengths)}
    tokens, files = {}, []
    for name, vids in (("train", ["v0", "v1", "v2", "v3"]), ("val", ["v4", "v5", "v6"])):
        lines = []
        for j, vid in enumerate(vids):
            for k in range(1 + (j % 2)):
                cid = f"{vid}#enc#{k}"
                tokens[cid] = rng.normal(size=(caption_lengths[(j + k) % 4], DIM)).astype(np.float32)
                lines.append(f"{cid} caption {k} of {vid}\n")
        (root / f"{name}.txt").write_text("".join(lines))
        files.append(root / f"{name}.txt")
    write_features(root / "video.h5", videos.items())
    write_features(root / "text.h5", tokens.items())
    return files, root / "video.h5", root / "text.h5", videos, tokens


@pytest.fixture
def corpus(tmp_path):
    return _corpus(tmp_path)


def test_round_trip_frames_and_ragged_queries(tmp_path, corpus, monkeypatch):
    files, vstore, tstore, videos, tokens = corpus
    monkeypatch.setattr(fc, "BLOCK_BYTES", 3 * 5 * DIM * 2)  # 3 videos / 3 token rows per block: many writes
    out = build_feature_cache(tmp_path / "cache", files, vstore, tstore, frame_tokens=5, max_query_len=8)
    assert sorted(p.name for p in out.iterdir()) == ["frames.npy", "index.json", "query_offsets.npy",
                                                    "query_tokens.npy"]
    assert not list(tmp_path.glob(".*prvr.tmp"))
    cache = FeatureCache(out)
    assert cache.videos == [f"v{i}" for i in range(7)]
    assert isinstance(cache.frames, np.memmap) and cache.frames.dtype == np.float16
    for i, vid in enumerate(cache.videos):
        np.testing.assert_array_equal(cache.frames[i], resample_frames(videos[vid], 5).astype(np.float16))
    assert cache.tokens.shape == (sum(min(len(t), 8) for t in tokens.values()), DIM)  # ragged, not padded
    assert cache.captions == list(tokens)  # file order over the splits
    for row, cid in enumerate(cache.captions):
        np.testing.assert_array_equal(cache.query(cid), tokens[cid][:8].astype(np.float16))
        assert cache.offsets[row + 1] - cache.offsets[row] == min(len(tokens[cid]), 8)
    assert {cache.captions[r] for r in cache.truncated} == {c for c, t in tokens.items() if len(t) > 8}
    index = json.loads((out / "index.json").read_text())
    assert index["frame_tokens"] == 5 and index["max_query_len"] == 8 and index["dtype"] == "float16"
    assert index["sources"]["video_store"]["sha256"] and len(index["sources"]["captions"]) == 2


def test_dataset_from_cache_equals_dataset_from_stores_up_to_float16(tmp_path, corpus):
    files, vstore, tstore, _, _ = corpus
    cache = FeatureCache(build_feature_cache(tmp_path / "cache", files, vstore, tstore, 5, 8))
    for split in files:
        stores = PRVRDataset(split, vstore, tstore, frame_tokens=5, max_query_len=8)
        cached = PRVRDataset.from_cache(cache, split)
        assert cached.index == stores.index and len(cached) == len(stores)
        assert cached.truncated_captions == stores.truncated_captions > 0
        assert cached.frames.shape == stores.frames.shape and len(cached.queries) == len(stores.queries)
        for i in range(len(stores)):
            a, b = stores[i], cached[i]
            assert a["vid"] == b["vid"] and b["frames"].dtype == np.float16
            np.testing.assert_array_equal(b["frames"], a["frames"].astype(np.float16))
            assert len(a["queries"]) == len(b["queries"])
            for qa, qb in zip(a["queries"], b["queries"]):
                np.testing.assert_array_equal(qb, qa.astype(np.float16))
        np.testing.assert_array_equal(cached.frames[1:3], stores.frames[1:3].astype(np.float16))
        np.testing.assert_array_equal(cached.frames[[2, 0]], stores.frames[[2, 0]].astype(np.float16))
        np.testing.assert_array_equal(cached.frames.astype(np.float32), stores.frames.astype(np.float16))
        batch_a = collate_videos([stores[i] for i in range(len(stores))])
        batch_b = collate_videos([cached[i] for i in range(len(cached))])
        for key in ("frame_feats", "query_feats", "query_eot"):
            assert batch_b[key].dtype == torch.float32
            torch.testing.assert_close(batch_b[key], batch_a[key], rtol=2 ** -11, atol=1e-7)
        assert torch.equal(batch_a["query_mask"], batch_b["query_mask"])


def test_rows_of_a_split_not_contiguous_in_the_cache(tmp_path, corpus):
    """A split whose videos are not one block of rows (built from the files in another order,
    plus one file interleaving both) is gathered row by row."""
    files, vstore, tstore, _, _ = corpus
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("v5#enc#0 a\nv0#enc#0 b\n")
    cache = FeatureCache(build_feature_cache(tmp_path / "c", [files[1], files[0], mixed], vstore, tstore, 5, 8))
    ds = PRVRDataset.from_cache(cache, mixed)
    stores = PRVRDataset(mixed, vstore, tstore, frame_tokens=5, max_query_len=8)
    np.testing.assert_array_equal(ds.frames[0:2], stores.frames.astype(np.float16))
    np.testing.assert_array_equal(ds[1]["frames"], stores[1]["frames"].astype(np.float16))


def test_stale_cache_is_refused_naming_the_index(tmp_path, corpus, monkeypatch):
    files, vstore, tstore, _, _ = corpus
    path = build_feature_cache(tmp_path / "cache", files, vstore, tstore, frame_tokens=5, max_query_len=8)
    index = path / "index.json"
    open_cache(path, files, vstore, tstore, 5, 8)  # the inputs it was built from
    with pytest.raises(StaleCacheError, match=rf"^{index}: built with frame_tokens=5, not 6; rebuild the cache$"):
        open_cache(path, files, vstore, tstore, 6, 8)
    with pytest.raises(StaleCacheError, match=rf"^{index}: built with max_query_len=8, not 77;"):
        open_cache(path, files, vstore, tstore, 5, 77)
    copy = tmp_path / "copy.h5"  # same bytes elsewhere (other path and mtime): the same input
    shutil.copy(vstore, copy)
    open_cache(path, files, copy, tstore, 5, 8)
    with h5py.File(copy, "r+") as store:  # one value changes: another input
        store["v2"][0, 0] += 1.0
    with pytest.raises(StaleCacheError, match=rf"^{index}: built from another video store than {copy} "):
        open_cache(path, files, copy, tstore, 5, 8)
    with pytest.raises(StaleCacheError, match=rf"^{index}: built from another text store than {vstore} "):
        open_cache(path, files, vstore, vstore, 5, 8)
    other = tmp_path / "other.txt"
    other.write_text("v0#enc#0 caption 0 of v0\n")
    with pytest.raises(StaleCacheError, match=rf"^{index}: built from other caption files than {other} "):
        open_cache(path, [files[0], other], vstore, tstore, 5, 8)
    with pytest.raises(StaleCacheError, match=f"^{index}: built from other caption files"):
        PRVRDataset.from_cache(path, other)
    from prvr.config import ModelConfig
    with pytest.raises(StaleCacheError, match="frame_tokens=5, not 32"):
        PRVRDataset.from_cache(path, files[0], ModelConfig(frame_tokens=32, max_query_len=8))
    monkeypatch.setattr(fc, "resample_code_hash", lambda: "changed")  # as if resample_frames had been edited
    with pytest.raises(StaleCacheError, match=f"^{index}: built by other frame resampling code"):
        open_cache(path, files, vstore, tstore, 5, 8)
    assert "\n" not in str(StaleCacheError(f"{index}: x"))


@pytest.mark.parametrize("bad, message", [
    ({"video": ("v2", np.where(np.arange(14 * DIM).reshape(14, DIM) == 20, np.nan, 1.0))},
     "video.h5: video 'v2': NaN in row 2"),
    ({"video": ("v1", np.full((9, DIM), 7e4))},
     "video.h5: video 'v1': value 70000 in row 0 overflows float16 (|x| > 65504); the feature cache cannot hold it"),
    ({"video": ("v3", np.ones((6, DIM + 1)))}, "video.h5: video 'v3' has dimension 9, expected 8 (first video 'v0')"),
    ({"caption": ("v5#enc#1", np.ones((0, DIM)))}, "text.h5: caption 'v5#enc#1' has 0 rows"),
    ({"caption": ("v1#enc#1", np.full((3, DIM), -np.inf))}, "text.h5: caption 'v1#enc#1': -inf in row 0"),
    ({"caption": ("v2#enc#0", np.full((3, DIM), 1e5))}, "text.h5: caption 'v2#enc#0': value 100000 in row 0 overflows"),
])
def test_bad_entry_is_named_and_nothing_is_left(tmp_path, bad, message):
    files, vstore, tstore, videos, tokens = _corpus(tmp_path)
    for kind, (item, array) in bad.items():
        store, items = (vstore, videos) if kind == "video" else (tstore, tokens)
        items[item] = array
        write_features(store, items.items())
    with pytest.raises(FeatureError) as err:
        build_feature_cache(tmp_path / "cache", files, vstore, tstore, frame_tokens=5, max_query_len=8)
    assert str(err.value).startswith(f"{tmp_path}/{message}")
    assert not (tmp_path / "cache").exists() and not list(tmp_path.glob(".*prvr.tmp"))


def test_missing_id_and_damaged_cache(tmp_path, corpus):
    files, vstore, tstore, videos, tokens = corpus
    write_features(tstore, [(c, t) for c, t in tokens.items() if c != "v4#enc#0"])
    with pytest.raises(UnknownIdError, match=r"text\.h5: unknown feature id 'v4#enc#0'"):
        build_feature_cache(tmp_path / "cache", files, vstore, tstore, 5, 8)
    write_features(tstore, tokens.items())
    path = build_feature_cache(tmp_path / "cache", files, vstore, tstore, 5, 8)
    with pytest.raises(CacheError, match=rf"^{tmp_path}/gone.h5: video store not found \(checking {path}/index.json\)$"):
        open_cache(path, files, tmp_path / "gone.h5", tstore, 5, 8)
    with pytest.raises(CacheError, match=rf"^{tmp_path}/nothing: not a feature cache \(no index.json\)"):
        FeatureCache(tmp_path / "nothing")
    np.save(path / "frames.npy", np.zeros((7, 4, DIM), np.float16))  # not what the index says
    with pytest.raises(CacheError, match=rf"frames.npy: shape \(7, 4, 8\), but {path}/index.json says \(7, 5, 8\)"):
        FeatureCache(path)
    build_feature_cache(path, files, vstore, tstore, 5, 8)  # a rebuild replaces the old directory whole
    assert FeatureCache(path).frames.shape == (7, 5, DIM)
    assert not list(tmp_path.glob(".*prvr.tmp"))


# training from the cache ---------------------------------------------------------------------------

TINY = {"model": {"input_dim": DIM, "hidden": 16, "heads": 2, "frame_tokens": 6, "clip_tokens": 3, "dropout": 0.1},
        "train": {"epochs": 2, "batch_size": 4, "early_stop": 10, "num_threads": 1}}


@pytest.fixture(scope="module")
def train_data(data):
    """The learnable training set of tests/conftest.py (test_trainer's) and its cache."""
    from prvr.training.trainer import TrainData
    stores, root = data, data.train_captions.parent
    cache = build_feature_cache(root / "cache", [stores.train_captions, stores.val_captions], stores.video_feats,
                                stores.text_feats, frame_tokens=6, max_query_len=77)
    return stores, TrainData(*vars(stores).values(), feature_cache=cache)


def test_training_from_the_cache_is_deterministic_and_close_to_the_stores(tmp_path, train_data):
    from prvr.config import Config, merge
    from prvr.training.trainer import run_identity, train
    stores, cached = train_data
    cfg = merge(Config(), TINY)
    a = train(cfg, 3, cached, tmp_path / "a")
    b = train(cfg, 3, cached, tmp_path / "b")
    assert a == b
    assert (tmp_path / "a/train_log.jsonl").read_text() == (tmp_path / "b/train_log.jsonl").read_text()
    wa = torch.load(tmp_path / "a/model.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b/model.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train(cfg, 3, stores, tmp_path / "s")
    log_cache = [json.loads(line) for line in (tmp_path / "a/train_log.jsonl").read_text().splitlines()]
    log_stores = [json.loads(line) for line in (tmp_path / "s/train_log.jsonl").read_text().splitlines()]
    for c, s in zip(log_cache, log_stores):  # inputs within float16 rounding: nearly the same losses
        for term, value in s["loss"].items():
            assert c["loss"][term] == pytest.approx(value, rel=2e-3 if c["epoch"] == 0 else 1e-2), term
    # the cache is an input of the run: another cache (or none) is another run
    assert "feature_cache" in run_identity(cfg, 3, cached)["inputs"]
    assert "feature_cache" not in run_identity(cfg, 3, stores)["inputs"] and "feature_cache" not in vars(stores)


def test_training_refuses_a_cache_of_other_settings(tmp_path, train_data):
    from prvr.config import Config, merge
    from prvr.training.trainer import train
    _, cached = train_data
    cfg = merge(Config(), {**TINY, "model": {**TINY["model"], "frame_tokens": 8}})
    with pytest.raises(StaleCacheError, match=rf"^{cached.feature_cache}/index.json: built with frame_tokens=6, not 8"):
        train(cfg, 3, cached, tmp_path / "r")
    assert os.path.isdir(cached.feature_cache)
