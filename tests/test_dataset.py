"""Frame resampling and batching of videos with all their captions."""
import h5py
import numpy as np
import pytest
import torch

from prvr.data.dataset import PRVRDataset, collate_videos, pad_queries
from prvr.store.resample import resample_edges, resample_frames
from prvr.store.feature_store import FeatureError, write_features


def test_resample_mean_pools_contiguous_bins():
    # 6 -> 3: edges round(i * 6 / 3) = 0, 2, 4, 6 -> clamped to 5: bins {0, 1}, {2, 3}, {4}; frame 5 unused
    feats = np.arange(6, dtype=np.float32)[:, None]  # (6, 1): frames 0..5
    out = resample_frames(feats, 3)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.0])
    assert out.dtype == np.float32


def test_resample_uneven_bins_by_hand():
    # 10 -> 3: i * 10 / 3 = 0, 3.33, 6.67, 10 -> edges 0, 3, 7, 9 (10 clamped to T - 1 = 9)
    feats = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    out = resample_frames(feats, 3)
    np.testing.assert_allclose(out, [feats[0:3].mean(0), feats[3:7].mean(0), feats[7:9].mean(0)], rtol=1e-5)


def test_resample_repeats_short_videos_in_order():
    # 3 -> 6: i * 3 / 6 = 0, .5, 1, 1.5, 2, 2.5 -> round half to even: 0, 0, 1, 2, 2, 2 (floor: 0, 0, 1, 1, 2, 2)
    feats = np.arange(3, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(resample_frames(feats, 6)[:, 0], [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(resample_frames(feats, 3), feats)
    np.testing.assert_array_equal(resample_frames(feats[:1], 4)[:, 0], [0, 0, 0, 0])


def test_resample_37_frames_to_128_tokens_is_nearest_frame_half_to_even():
    """T < n: token i is frame min(round(i * 37 / 128), 36); Python's round also rounds half to even."""
    expected = []
    for i in range(128):
        expected.append(min(round(i * 37 / 128), 36))
    feats = np.arange(37, dtype=np.float64)[:, None]  # frame k has value k: tokens read as frame indices
    got = resample_frames(feats, 128)[:, 0]
    np.testing.assert_array_equal(got, expected)
    assert got[0] == 0
    assert got[2] == 1  # 2 * 37 / 128 = 0.578 -> 1 (floor would give 0)
    assert got[64] == 18  # 64 * 37 / 128 = 18.5 exactly -> 18 (half to even; floor 18, half-up 19)
    assert got[96] == 28  # 27.75 -> 28
    assert got[127] == 36  # 36.7 -> 37, clamped to the last frame
    assert sorted(set(got.tolist())) == list(range(37))  # every frame appears, in order
    assert (np.diff(got) >= 0).all()


def test_resample_200_frames_to_128_tokens_drops_the_last_frame():
    """T > n: bin i is frames round(i * 200 / 128)..round((i + 1) * 200 / 128) - 1 (all exact in float64:
    128 is a power of two), except that the last edge 200 is clamped to 199, so the last token is frame
    198 alone and frame 199 is in no bin."""
    edges = [round(i * 200 / 128) for i in range(128)] + [199]
    rng = np.random.default_rng(1)
    feats = np.concatenate([np.arange(200, dtype=np.float64)[:, None], rng.normal(size=(200, 3))], axis=1)
    got = resample_frames(feats, 128)
    used = []
    for i in range(128):
        start, end = edges[i], edges[i + 1]
        assert start < end  # T > n: no bin is empty
        used.extend(range(start, end))
        np.testing.assert_allclose(got[i], feats[start:end].mean(axis=0), rtol=1e-6, atol=1e-6)
    assert used == list(range(199))  # every frame once, except 199
    assert got[127, 0] == 198  # last bin: 127 * 200 / 128 = 198.4375 -> 198, up to 199 exclusive
    assert got[7, 0] == 11  # edges 10.94 -> 11 and 12.5 -> 12 (half to even): frame 11 alone
    assert got[8, 0] == 12.5  # edges 12 and 14.06 -> 14: frames 12, 13
    assert got[23, 0] == 36.5  # edges 35.94 -> 36 and 37.5 -> 38 (half to even): frames 36, 37


def test_resample_edges_use_the_authors_float32_arithmetic():
    """Edges are min(round(arange(n + 1) / n * T), T - 1) in float32 (torch's default dtype, as the
    authors compute them); for n not a power of two this can differ from the exact rational rule."""
    assert resample_edges(95, 10)[3] == 29  # 3 / 10 * 95: 28.5 exactly, 28.500002 in float32
    assert round(3 * 95 / 10) == 28
    for n in (3, 6, 10, 32, 100, 128):
        for t in range(1, 300, 7):
            reference = torch.clamp(torch.round(torch.arange(0, n + 1, 1.0) / n * t).long(), max=t - 1)
            np.testing.assert_array_equal(resample_edges(t, n), reference.numpy(), err_msg=f"T={t} n={n}")
    with pytest.raises(ValueError):
        resample_edges(0, 4)


def _dataset(tmp_path, lengths, max_query_len):
    """A one-video split whose captions have `lengths` token rows; row r of caption k is (k, r)."""
    captions = [f"v0#enc#{k}" for k in range(len(lengths))]
    (tmp_path / "split.caption.txt").write_text("".join(f"{c} caption {k}\n" for k, c in enumerate(captions)))
    write_features(tmp_path / "video.h5", [("v0", np.ones((5, 2), np.float32))])
    tokens = {c: np.stack([np.full(L, k), np.arange(L)], axis=1).astype(np.float32)
              for k, (c, L) in enumerate(zip(captions, lengths))}
    write_features(tmp_path / "text.h5", tokens.items())
    ds = PRVRDataset(tmp_path / "split.caption.txt", tmp_path / "video.h5", tmp_path / "text.h5",
                     frame_tokens=4, max_query_len=max_query_len)
    return ds, captions, tokens


def test_captions_cut_to_max_query_len(tmp_path):
    ds, captions, tokens = _dataset(tmp_path, [80, 10, 77], max_query_len=77)
    long, short, exact = (ds.queries[c] for c in captions)
    assert long.shape == (77, 2)
    np.testing.assert_array_equal(long, tokens[captions[0]][:77])
    np.testing.assert_array_equal(short, tokens[captions[1]])
    np.testing.assert_array_equal(exact, tokens[captions[2]])
    assert ds.truncated_captions == 1
    batch = collate_videos([ds[0]])
    assert batch["query_feats"].shape == (3, 77, 2)
    # the teacher is the last kept token: row 76 of the 80-row caption, the last row of the others
    torch.testing.assert_close(batch["query_eot"], torch.tensor([[0.0, 76.0], [1.0, 9.0], [2.0, 76.0]]))


def test_captions_kept_whole_without_max_query_len(tmp_path):
    ds, captions, tokens = _dataset(tmp_path, [80, 10], max_query_len=None)
    assert ds.queries[captions[0]].shape == (80, 2)
    assert ds.truncated_captions == 0
    torch.testing.assert_close(collate_videos([ds[0]])["query_eot"], torch.tensor([[0.0, 79.0], [1.0, 9.0]]))


def test_pad_queries_masks_padding():
    feats, mask = pad_queries([np.ones((2, 3)), np.ones((4, 3))])
    assert feats.shape == (2, 4, 3)
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    assert feats[0, 2:].abs().sum() == 0


def test_collate_maps_queries_to_their_video_and_keeps_eot():
    items = [
        {"vid": "a", "frames": np.zeros((4, 3), np.float32), "queries": [np.ones((2, 3)), 2 * np.ones((3, 3))]},
        {"vid": "b", "frames": np.ones((4, 3), np.float32), "queries": [np.full((1, 3), 5.0)]},
    ]
    batch = collate_videos(items)
    assert batch["frame_feats"].shape == (2, 4, 3)
    assert batch["query_to_video"].tolist() == [0, 0, 1]
    assert batch["query_feats"].shape == (3, 3, 3)
    torch.testing.assert_close(batch["query_eot"][:, 0], torch.tensor([1.0, 2.0, 5.0]))


def _bad_store_split(tmp_path, video=None, caption=None):
    """Two videos with two captions each (dimension 4); `video`/`caption` replace v1 / v1#enc#1."""
    captions = [f"v{i}#enc#{k}" for i in range(2) for k in range(2)]
    (tmp_path / "split.caption.txt").write_text("".join(f"{c} caption\n" for c in captions))
    videos = {"v0": np.ones((5, 4)), "v1": np.ones((3, 4)) if video is None else video}
    tokens = {c: np.ones((6, 4)) for c in captions}
    if caption is not None:
        tokens["v1#enc#1"] = caption
    write_features(tmp_path / "video.h5", videos.items())
    write_features(tmp_path / "text.h5", tokens.items())
    return [tmp_path / "split.caption.txt", tmp_path / "video.h5", tmp_path / "text.h5"]


def _with_nan(rows, row):
    array = np.ones((rows, 4))
    array[row, 2] = np.nan
    return array


def test_good_stores_load(tmp_path):
    ds = PRVRDataset(*_bad_store_split(tmp_path), frame_tokens=4)
    assert ds.frames.shape == (2, 4, 4) and len(ds.queries) == 4


@pytest.mark.parametrize("bad, message", [
    ({"video": _with_nan(5, 3)}, "video.h5: video 'v1': NaN in row 3"),
    ({"video": np.ones((2, 3))}, "video.h5: video 'v1' has dimension 3, expected 4 (first video 'v0')"),
    ({"video": np.ones((0, 4))}, "video.h5: video 'v1' has 0 rows"),
    ({"caption": np.where(np.arange(24).reshape(6, 4) == 9, np.inf, 1.0)}, "text.h5: caption 'v1#enc#1': inf in row 2"),
    ({"caption": np.ones((6, 5))}, "text.h5: caption 'v1#enc#1' has dimension 5, expected 4 (first caption 'v0#enc#0')"),
    ({"caption": np.ones((0, 4))}, "text.h5: caption 'v1#enc#1' has 0 rows"),
])
def test_bad_features_name_the_file_and_the_id(tmp_path, bad, message):
    with pytest.raises(FeatureError) as err:
        PRVRDataset(*_bad_store_split(tmp_path, **bad), frame_tokens=4)
    assert str(err.value) == f"{tmp_path}/{message}"


def test_non_2d_entry_is_named(tmp_path):
    paths = _bad_store_split(tmp_path)
    with h5py.File(paths[1], "a") as f:  # write_features refuses this; a foreign file may hold it
        del f["v1"]
        f["v1"] = np.ones((2, 3, 4), np.float32)
    with pytest.raises(FeatureError, match=r"video\.h5: video 'v1' has shape \(2, 3, 4\), expected 2-D"):
        PRVRDataset(*paths, frame_tokens=4)
