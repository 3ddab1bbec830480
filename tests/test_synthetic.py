"""Generated demo corpus: byte-identical output, decodable videos, consistent annotations and labels,
captions that describe what the frames show, and the CLIP pretraining pairs.

Run: .venv/bin/python -m pytest tests/test_synthetic.py -q
"""
import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import decord
import numpy as np
import pytest

from prvr.config import CorpusConfig
from prvr.data.synthetic import (CorpusError, generate_corpus, sample_events,
                                 PRETRAIN_GROUP, sample_pretraining_pairs, video_ids)
from prvr.data.vocabulary import COLOURS, KINDS, MOTIONS, SCENES, SHAPES, SIZES, event_caption, kind_name

TINY = CorpusConfig(seed=7, n_train=4, n_val=2, n_test=2, min_events=2, max_events=4,
                    event_seconds=(1.0, 2.0), fps=6, size=40)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_corpus(TINY, root)
    return root


def test_same_seed_gives_byte_identical_files(corpus, tmp_path):
    generate_corpus(TINY, tmp_path)
    first, second = _hashes(corpus), _hashes(tmp_path)
    assert len(first) == 8 + 4 and first == second         # 8 videos + 3 splits + labels


def test_other_seed_differs_and_other_split_sizes_keep_videos(corpus, tmp_path):
    generate_corpus(dataclasses.replace(TINY, seed=8), tmp_path / "seed8")
    assert _hashes(tmp_path / "seed8")["videos/demo_train_0000.mp4"] != _hashes(corpus)["videos/demo_train_0000.mp4"]
    generate_corpus(dataclasses.replace(TINY, n_test=3, n_train=3), tmp_path / "resized")
    resized, base = _hashes(tmp_path / "resized"), _hashes(corpus)
    for name in ("videos/demo_train_0002.mp4", "videos/demo_val_0001.mp4", "videos/demo_test_0001.mp4",
                 "annotations/val.jsonl"):
        assert resized[name] == base[name]
    assert "videos/demo_test_0002.mp4" in resized and "videos/demo_train_0003.mp4" not in resized


def test_video_ids_match_generated_files(corpus):
    assert video_ids(TINY, "val") == ["demo_val_0000", "demo_val_0001"]
    names = sorted(p.stem for p in (corpus / "videos").glob("*.mp4"))
    assert names == sorted(v for split in ("train", "val", "test") for v in video_ids(TINY, split))
    with pytest.raises(CorpusError, match="unknown split 'dev'"):
        video_ids(TINY, "dev")


def test_videos_decode_to_expected_frames_and_annotations_are_consistent(corpus):
    labels = {row["desc_id"]: row for row in _jsonl(corpus / "annotations" / "event_labels.jsonl")}
    desc_ids = []
    for split in ("train", "val", "test"):
        rows = _jsonl(corpus / "annotations" / f"{split}.jsonl")
        by_video = {}
        for row in rows:
            by_video.setdefault(row["vid_name"], []).append(row)
            desc_ids.append(row["desc_id"])
        assert sorted(by_video) == video_ids(TINY, split)
        for vid, queries in by_video.items():
            assert TINY.min_events <= len(queries) <= TINY.max_events
            reader = decord.VideoReader(str(corpus / "videos" / f"{vid}.mp4"))
            duration = queries[0]["duration"]
            assert len(reader) == round(duration * TINY.fps)
            assert reader[0].shape == (TINY.size, TINY.size, 3)
            ends = [0.0]
            for k, query in enumerate(queries):
                start, end = query["ts"]
                assert start == ends[-1] and 0 <= start < end <= duration   # contiguous events
                ends.append(end)
                label = labels[query["desc_id"]]
                assert (label["vid_name"], label["event_index"]) == (vid, k)
                assert label["kind"] == kind_name(label["shape"], label["motion"])
            assert ends[-1] == duration
            assert len({labels[q["desc_id"]]["kind"] for q in queries}) == len(queries)
    assert len(desc_ids) == len(set(desc_ids)) == len(labels)


def test_kinds_recur_across_videos():
    rng = np.random.default_rng(0)
    videos = [sample_events(CorpusConfig(), rng) for _ in range(150)]
    videos_per_kind = Counter(kind for events in videos for kind in {e.kind for e in events})
    assert len(videos_per_kind) == len(KINDS)
    assert min(videos_per_kind.values()) >= 3
    scenes_per_video = [len({e.scene for e in events}) for events in videos]
    assert max(scenes_per_video) > 1 and min(scenes_per_video) == 1      # scenes change sometimes


def test_caption_words_name_one_attribute_each():
    """No content word is shared by two attributes ("over white snow" would name a colour)."""
    tables = {"shape": SHAPES, "colour": {k: v[1] for k, v in COLOURS.items()},
              "motion": {k: [w for pair in v for w in pair] for k, v in MOTIONS.items()},
              "scene": {k: v[1] for k, v in SCENES.items()}, "size": SIZES}
    owners = {}
    for attribute, table in tables.items():
        for forms in table.values():
            for word in " ".join(forms).split():
                owners.setdefault(word, set()).add(attribute)
    function_words = {"a", "and", "in", "on", "the", "to"}
    assert {w for w, attrs in owners.items() if len(attrs) > 1} <= function_words
    rng = np.random.default_rng(0)
    attrs = {"shape": "ring", "colour": "red", "motion": "orbit", "scene": "snow", "size": "small"}
    captions = {event_caption(attrs, rng) for _ in range(200)}
    assert len(captions) > 50 and all(c[0].isupper() and c.endswith(".") for c in captions)
    assert all(any(form in c for pair in MOTIONS["orbit"] for form in pair) for c in captions)


def _colour_mask(frame: np.ndarray, colour: str, tolerance: float = 60.0) -> np.ndarray:
    target = np.array(COLOURS[colour][0], dtype=float)
    return np.linalg.norm(frame.astype(float) - target, axis=-1) < tolerance


def test_frames_show_the_captioned_colour_and_motion(tmp_path):
    """What captions say is visible: the event's colour is on screen, directed motions go that way."""
    cfg = CorpusConfig(seed=11, n_train=6, n_val=0, n_test=0, min_events=4, max_events=6,
                       event_seconds=(2.0, 3.0), fps=8, size=64)
    generate_corpus(cfg, tmp_path)
    labels = _jsonl(tmp_path / "annotations" / "event_labels.jsonl")
    spans = {row["desc_id"]: row["ts"] for row in _jsonl(tmp_path / "annotations" / "train.jsonl")}
    directed = 0
    for label in labels:
        frames = decord.VideoReader(str(tmp_path / "videos" / f"{label['vid_name']}.mp4"))
        first, last = (round(t * cfg.fps) for t in spans[label["desc_id"]])
        clip = frames.get_batch(list(range(first + 1, last - 1))).asnumpy()       # (T, H, W, 3)
        masks = [_colour_mask(frame, label["colour"]) for frame in clip]
        assert max(mask.sum() for mask in masks) >= 8, label
        axis = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1)}.get(label["motion"])
        if axis and masks[0].sum() >= 8 and masks[-1].sum() >= 8:
            begin, end = (np.argwhere(m)[:, axis[0]].mean() for m in (masks[0], masks[-1]))
            assert (end - begin) * axis[1] > 5, label
            directed += 1
    assert directed >= 3


@pytest.mark.parametrize("field, value, message", [
    ("size", 33, "size must be an even number"),
    ("size", 48, "decoded wrongly by decord"),
    ("min_events", 0, "min_events"),
    ("event_seconds", (3.0, 2.0), "event_seconds"),
    ("n_train", -1, "n_train"),
])
def test_bad_config_is_a_clear_error(tmp_path, field, value, message):
    with pytest.raises(CorpusError, match=message):
        generate_corpus(dataclasses.replace(TINY, **{field: value}), tmp_path)


def test_pretraining_pairs_shapes_determinism_and_captions():
    images, captions = sample_pretraining_pairs(300, seed=5, image_size=32)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8 and len(captions) == 300
    again, again_captions = sample_pretraining_pairs(300, seed=5, image_size=32)
    assert np.array_equal(images, again) and captions == again_captions
    other, _ = sample_pretraining_pairs(300, seed=6, image_size=32)
    assert not np.array_equal(images, other)
    assert len(set(captions)) > 150
    motion_words = {verb.split()[0] for forms in MOTIONS.values() for verb, _ in forms} - {"turns"}
    assert not any(word in caption.lower().split() for caption in captions for word in motion_words)
    assert images.reshape(300, -1).std(axis=1).min() > 3                    # never a blank frame


def test_pretraining_pairs_come_in_groups_of_hard_negatives():
    """Consecutive groups share scene and colour; their captions always name the shape and tell
    every frame of a group apart (what differs: shape, position or size, or the empty scene)."""
    n = 40 * PRETRAIN_GROUP
    images, captions = sample_pretraining_pairs(n, seed=7, image_size=32)
    assert sample_pretraining_pairs.group == PRETRAIN_GROUP
    shape_words = [form for forms in SHAPES.values() for form in forms]
    for start in range(0, n, PRETRAIN_GROUP):
        group = captions[start:start + PRETRAIN_GROUP]
        assert len(set(group)) == PRETRAIN_GROUP, group
        for caption in group:
            text = f" {caption.lower().rstrip('.')} "
            empty = text.startswith((" nothing", " an empty scene", " no shape", " just the background"))
            assert empty or any(f" {w} " in text for w in shape_words), caption
    assert any(c.startswith("Nothing") or "empty scene" in c for c in captions)  # blinking shapes' frames
