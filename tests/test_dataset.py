"""Frame resampling and batching of videos with all their captions."""
import numpy as np
import pytest
import torch

from prvr.data.dataset import collate_videos, pad_queries, resample_frames


def test_resample_mean_pools_contiguous_bins():
    feats = np.arange(6, dtype=np.float32)[:, None]  # (6, 1): frames 0..5
    out = resample_frames(feats, 3)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.5])


def test_resample_uneven_bins_count_every_frame_once():
    feats = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    out = resample_frames(feats, 3)
    edges = np.round(np.linspace(0, 10, 4)).astype(int)
    sizes = np.diff(edges)
    assert sizes.sum() == 10 and (sizes > 0).all()
    np.testing.assert_allclose((out * sizes[:, None]).sum(0), feats.sum(0), rtol=1e-5)


def test_resample_repeats_short_videos_in_order():
    feats = np.arange(3, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(resample_frames(feats, 6)[:, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(resample_frames(feats, 3), feats)


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
