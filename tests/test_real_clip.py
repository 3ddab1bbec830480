"""A real-size CLIP (ViT-L-14) end to end: weights file -> load_clip -> parse -> decode -> features,
read back the way the authors' loader (MSC_PRVR / GMMFormer_v2 data_provider.py) reads its files.

The weights are a randomly initialised ViT-L-14 saved in float16 (0.86 GB instead of 1.7 GB), once
per module, and loaded through `load_clip("ViT-L-14", <file>)`: the `pretrained=<file>` path that real
weights take. Frames are sampled at 0.25 fps (5 frames of the 18 s clip; ViT-L-14 costs ~1 s a
frame on 2 CPU cores); the module runs in ~20 s (building and saving the model: ~7 s). The last
tests need no model: the authors' keys, and that video extraction streams into its shard.
"""
import json
from pathlib import Path

import h5py
import numpy as np
import open_clip
import pytest
import torch

from prvr.config import FramesConfig
from prvr.sources.annotations import read_activitynet_json
from prvr.store.resample import resample_frames
from prvr.store.splits import read_caption_txt, write_caption_txt
from prvr.video.decoding import duration_seconds
from prvr.store.feature_store import FeatureStore
from prvr.features.clip import load_clip
import prvr.features.extract as extract
from prvr.features.extract import (authors_video_key, export_authors_video_file, extract_text_features,
                                   extract_video_features, release_free_heap)

DATA = Path(__file__).parent / "data"
VIDEO = DATA / "videos" / "v_GGSY1Qvo990.mp4"  # ActivityNet clip, 18.09 s, 320x240
VID = "v_GGSY1Qvo990"
EXCERPT = DATA / "annotations" / "activitynet_val_1_excerpt.json"  # 3 other videos' real captions
# The excerpt does not list this clip: its two captions (of what the clip shows) are written here.
CLIP_ENTRY = {"duration": 18.09, "timestamps": [[0.0, 6.5], [5.0, 18.09]],
              "sentences": ["A woman in blue bends down and grips a barbell on the floor.",
                            " She lifts the barbell over her head and holds it there."]}
FRAMES = FramesConfig(fps=0.25, max_frames=8)  # round(18.09 * 0.25) = 5 frames


def authors_items(caption_file, video_h5, text_h5, collection, max_desc_len=77):
    """What the authors' Dataset4PRVR / TxtDataSet4PRVR take from the two HDF5 files, per video.

    Their access pattern: the caption file's `<vid>#enc#<k>` ids grouped by video; `f[key][...]` on
    root datasets (ActivityNet video key: the id without its first two characters); rows L2-normalised;
    a caption keeps rows[:77], all of them unmasked, and its last row is the CLIP sentence embedding.
    """
    def l2(x):
        return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-5)

    by_video: dict[str, list[str]] = {}
    for line in Path(caption_file).read_text().splitlines():
        cap_id = line.strip().split(" ", 1)[0]
        by_video.setdefault(cap_id.split("#")[0], []).append(cap_id)
    with h5py.File(video_h5, "r") as videos, h5py.File(text_h5, "r") as texts:
        for vid, cap_ids in by_video.items():
            key = vid[2:] if collection == "activitynet" else vid
            frames = l2(videos[key][...].astype(np.float32))  # (T, D)
            captions = [torch.from_numpy(l2(texts[c][...].astype(np.float32)))[:max_desc_len] for c in cap_ids]
            mask = [np.ones(len(c), np.float32) for c in captions]  # every stored row is a word
            sentence = [c[int(m.sum()) - 1] for c, m in zip(captions, mask)]  # row L - 1
            yield vid, frames, captions, sentence


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(file, a few float32 tensors of the model saved) for a random ViT-L-14 saved in float16."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-L-14", pretrained=None)
    state = model.state_dict()
    kept = {name: state[name].clone() for name in ("visual.proj", "text_projection", "visual.conv1.weight")}
    path = tmp_path_factory.mktemp("vit_l14") / "vit_l14_random_fp16.pt"
    torch.save({name: value.half() for name, value in state.items()}, path)
    del model, state
    return path, kept


@pytest.fixture(scope="module")
def encoder(weights):
    return load_clip("ViT-L-14", str(weights[0]), batch_size=8)


@pytest.fixture(scope="module")
def corpus(encoder, tmp_path_factory):
    """parse -> decode -> features: annotation json, caption file, video store, text store."""
    root = tmp_path_factory.mktemp("activitynet")
    annotations = {**json.loads(EXCERPT.read_text()), VID: CLIP_ENTRY}
    (root / "val_1.json").write_text(json.dumps(annotations))
    queries = read_activitynet_json(root / "val_1.json")
    write_caption_txt([q for q in queries if q.vid == VID], root / "activitynetval.caption.txt")
    video_summary = extract_video_features({VID: VIDEO}, encoder, FRAMES, root / "video_feats.h5")
    captions = {q.caption_id: q.desc for q in queries}
    n_text = extract_text_features(captions, encoder, root / "text_feats.h5")
    export_authors_video_file(root / "video_feats.h5", root / "activitynet_clip_L14.h5", "activitynet")
    return {"root": root, "queries": queries, "captions": captions, "video_summary": video_summary,
            "n_text": n_text}


def test_float16_weights_file_loads_like_real_weights(weights, encoder):
    path, kept = weights
    assert encoder.pretrained == str(path) and encoder.embed_dim == 768 and encoder.image_size == 224
    params = dict(encoder.model.named_parameters())
    for name, value in kept.items():  # float16 copied into the float32 model
        assert params[name].dtype == torch.float32
        torch.testing.assert_close(params[name].detach(), value.half().float(), rtol=0, atol=0)


def test_video_store_has_one_768_row_per_sampled_frame(corpus):
    assert corpus["video_summary"] == {"written": 1, "skipped": {}}
    expected_t = round(duration_seconds(VIDEO) * FRAMES.fps)
    assert expected_t == 5
    with FeatureStore(corpus["root"] / "video_feats.h5") as store:
        assert store.ids() == [VID]
        feats = store[VID]
        assert feats.shape == (expected_t, 768) and feats.dtype == np.float32
        assert np.isfinite(feats).all() and not np.allclose(feats[0], feats[1])  # two different frames
        attrs = store.attrs
        assert attrs["clip_model"] == "ViT-L-14" and attrs["embed_dim"] == 768 and attrs["kind"] == "video"
        assert attrs["fps"] == FRAMES.fps and attrs["image_size"] == 224


def test_caption_store_ends_at_end_of_text(encoder, corpus):
    captions = corpus["captions"]
    assert corpus["n_text"] == len(captions) == 10  # 2 + 3 + 3 real excerpt captions + this clip's 2
    tokens = encoder.tokenizer(list(captions.values()))  # (N, 77)
    eot = tokens.argmax(dim=-1).tolist()  # CLIP's end-of-text has the largest token id
    with torch.inference_mode():
        pooled = encoder.model.encode_text(tokens).numpy()  # full 77-token pass, (N, 768)
    with FeatureStore(corpus["root"] / "text_feats.h5") as store:
        for (caption_id, _), end, sentence in zip(captions.items(), eot, pooled):
            feats = store[caption_id]
            assert feats.shape == (end + 1, 768) and feats.dtype == np.float32  # no padding rows
            assert store.item_attrs(caption_id)["eot_index"] == end
            np.testing.assert_allclose(feats[-1], sentence, rtol=1e-4, atol=1e-4)


def test_authors_loader_reads_our_files(corpus):
    root = corpus["root"]
    caption_file = root / "activitynetval.caption.txt"
    assert [cid for cid, _ in read_caption_txt(caption_file)] == [f"{VID}#enc#0", f"{VID}#enc#1"]
    # ActivityNet: their video file is keyed without "v_"; ours keeps the caption file's id
    with h5py.File(root / "video_feats.h5", "r") as ours:
        assert list(ours) == [VID]
    with pytest.raises(KeyError):
        next(authors_items(caption_file, root / "video_feats.h5", root / "text_feats.h5", "activitynet"))
    exported = root / "activitynet_clip_L14.h5"
    with h5py.File(exported, "r") as f:
        assert list(f) == [authors_video_key("activitynet", VID)] == ["GGSY1Qvo990"]
        assert all(isinstance(node, h5py.Dataset) for node in f.values())  # root datasets, no groups

    (vid, frames, captions, sentences), = authors_items(caption_file, exported, root / "text_feats.h5",
                                                        "activitynet")
    assert vid == VID and frames.shape == (5, 768)
    with FeatureStore(root / "video_feats.h5") as store:
        raw = store[VID]
    np.testing.assert_allclose(frames * np.linalg.norm(raw, axis=-1, keepdims=True), raw, rtol=1e-4, atol=1e-5)
    assert resample_frames(frames, 128).shape == (128, 768)  # their map_size, from any T
    with FeatureStore(root / "text_feats.h5") as store:
        for cap_id, caption, sentence in zip((f"{VID}#enc#0", f"{VID}#enc#1"), captions, sentences):
            stored = store[cap_id]
            assert caption.shape == stored.shape and len(caption) <= 77
            end = store.item_attrs(cap_id)["eot_index"]
            unit = stored[end] / (np.linalg.norm(stored[end]) + 1e-5)
            np.testing.assert_allclose(sentence.numpy(), unit, rtol=1e-5, atol=1e-6)  # their query = EOT


def test_authors_keys_only_differ_for_activitynet():
    assert authors_video_key("tvr", "friends_s01e01_seg02_clip_00") == "friends_s01e01_seg02_clip_00"
    assert authors_video_key("charades", "AO8RW") == "AO8RW"
    assert authors_video_key("activitynet", "v_--0edUL8zmA") == "--0edUL8zmA"
    for bad in ("GGSY1Qvo990", "v_"):
        with pytest.raises(ValueError, match="does not start with 'v_'"):
            authors_video_key("activitynet", bad)


def test_video_extraction_streams_one_video_at_a_time(tmp_path, monkeypatch):
    """Each video's features reach the writer before the next video is decoded (nothing is
    collected), and freed heap is handed back every TRIM_EVERY videos."""
    decoded, received, trims = [], [], []
    monkeypatch.setattr(extract, "video_frame_features",
                        lambda path, encoder, cfg, folder_fps=None: decoded.append(path) or np.ones((2, 4), np.float32))
    monkeypatch.setattr(extract, "release_free_heap", lambda: trims.append(len(decoded)))
    real_write = extract.write_features

    def spy(path, items, **kwargs):
        def watched():
            for item in items:
                received.append((item[0], len(decoded)))
                yield item
        return real_write(path, watched(), **kwargs)

    monkeypatch.setattr(extract, "write_features", spy)
    n = 2 * extract.TRIM_EVERY + 3
    videos = {f"v{i:03d}": Path(f"v{i:03d}.mp4") for i in range(n)}
    encoder = type("Encoder", (), {"describe": lambda self: {"clip_model": "fake"}})()
    assert extract_video_features(videos, encoder, FramesConfig(), tmp_path / "s.h5")["written"] == n
    assert received == [(f"v{i:03d}", i + 1) for i in range(n)]  # no read-ahead
    assert trims == [extract.TRIM_EVERY - 1, 2 * extract.TRIM_EVERY - 1]
    assert release_free_heap() in (True, False)
