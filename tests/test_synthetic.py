"""Generated demo corpus: byte-identical output, decodable videos, consistent annotations and labels,
captions that name what the frames show, moments a small part of their video, and the CLIP
pretraining stills with their attribute labels.

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
from prvr.demo import render
from prvr.demo.pretraining_pairs import CELLS, sample_pretraining_pairs
from prvr.demo.synthetic import CorpusError, generate_corpus, sample_layout, video_ids
from prvr.demo.vocabulary import (COLOURS, KINDS, MOTIONS, POSITION_WORDS, ROTATION_ORDER, SCENES, SHAPES, SIZES,
                                  event_caption, kind_name)

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
    low, high = TINY.gap_seconds
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
                assert low - 1e-9 <= start - ends[-1] <= high + 0.5 / TINY.fps and start < end  # filler, then the event
                ends.append(end)
                label = labels[query["desc_id"]]
                assert (label["vid_name"], label["event_index"]) == (vid, k)
                assert label["kind"] == kind_name(label["shape"], label["motion"])
            assert low - 1e-9 <= duration - ends[-1] <= high + 0.5 / TINY.fps
            assert len({labels[q["desc_id"]]["kind"] for q in queries}) == len(queries)
    assert len(desc_ids) == len(set(desc_ids)) == len(labels)


def test_kinds_recur_across_videos():
    rng = np.random.default_rng(0)
    videos = [sample_layout(CorpusConfig(), rng)[0] for _ in range(300)]     # the train split
    videos_per_kind = Counter(kind for events in videos for kind in {e.kind for e in events})
    assert len(videos_per_kind) == len(KINDS)
    assert min(videos_per_kind.values()) >= 3
    scenes_per_video = [len({e.scene for e in events}) for events in videos]
    assert max(scenes_per_video) > 1 and min(scenes_per_video) == 1      # scenes change sometimes


def test_moments_are_a_small_part_of_their_video_and_whole_videos_do_not_match():
    """Default corpus: a moment is 12-32 % of its video on average (TVR val 12 %, ActivityNet val_1
    32 %), and a caption's shape, colour, motion and scene occur somewhere in many videos but
    together in one event of few (often one): whole-video matching fails where moment matching works."""
    cfg = CorpusConfig()
    layouts = [sample_layout(cfg, np.random.default_rng([5, i])) for i in range(200)]
    fractions = np.array([e.n_frames / n_frames for events, n_frames in layouts for e in events])
    assert 0.12 < fractions.mean() < 0.32 and np.median(fractions) < fractions.mean() + 0.02
    assert any(events[0].start_frame > 0 for events, _ in layouts)                   # filler before events
    fields = ("shape", "colour", "motion", "scene")
    bags = [{f: {getattr(e, f) for e in events} for f in fields} for events, _ in layouts]
    moments = [{tuple(getattr(e, f) for f in fields) for e in events} for events, _ in layouts]
    bag_hits, moment_hits = [], []
    for events, _ in layouts:
        for e in events:
            bag_hits.append(sum(all(getattr(e, f) in bag[f] for f in fields) for bag in bags))
            moment_hits.append(sum(tuple(getattr(e, f) for f in fields) in m for m in moments))
    assert np.mean(bag_hits) > 4 and np.mean(np.array(bag_hits) == 1) < 0.05
    assert np.mean(np.array(moment_hits) == 1) > 0.7


def _names(caption: str, forms) -> bool:
    text = f" {caption.lower().rstrip('.').replace(',', ' ')} "
    return any(f" {form} " in text for form in forms)


def test_caption_words_name_one_attribute_each_and_captions_name_every_attribute():
    """No content word is shared by two attributes ("over white snow" would name a colour); every
    caption names the shape, colour, motion and scene (the text side cannot encode what it omits)."""
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
    for caption in captions:
        assert all(_names(caption, tables[a][attrs[a]]) for a in ("shape", "colour", "motion", "scene")), caption
    assert 0.2 < np.mean([_names(c, SIZES["small"]) for c in captions]) < 0.5     # the size sometimes


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
    ("gap_seconds", (-1.0, 1.0), "gap_seconds"),
    ("n_train", -1, "n_train"),
    ("scene_keep", 1.5, "scene_keep"),
])
def test_bad_config_is_a_clear_error(tmp_path, field, value, message):
    with pytest.raises(CorpusError, match=message):
        generate_corpus(dataclasses.replace(TINY, **{field: value}), tmp_path)


@pytest.mark.parametrize("scene_keep", [0.0, 1.0])
def test_scene_keep_decides_whether_an_event_stays_in_the_previous_scene(scene_keep):
    cfg = dataclasses.replace(TINY, min_events=4, max_events=6, scene_keep=scene_keep)
    rng = np.random.default_rng(11)
    for _ in range(20):
        events, _ = sample_layout(cfg, rng)
        kept = [a.scene == b.scene for a, b in zip(events, events[1:])]
        assert all(kept) if scene_keep == 1.0 else not any(kept)


def test_repeated_motions_fit_an_event_and_spins_turn_as_far_as_can_be_seen():
    """The few frame tokens of an event see its repetitions: 1-2 bounces (back at the start height at
    the end), a spin turns by 0.5-1 of the shape's symmetry period, a blink shows and hides."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        bounce = render.sample_track("bounce", 40, rng)
        assert bounce.y[0] == pytest.approx(bounce.y[-1], abs=1e-6) and np.ptp(bounce.y) > 0.25
        for shape, order in ROTATION_ORDER.items():
            if order:
                turn = abs(np.ptp(render.sample_track("spin", 40, rng, order).angle))
                assert 0.5 * 2 * np.pi / order - 1e-6 <= turn <= 2 * np.pi / order + 1e-6, shape
        assert 0 < render.sample_track("blink", 40, rng).visible.mean() < 1


def test_pretraining_pairs_shapes_determinism_and_captions():
    images, captions, labels = sample_pretraining_pairs(300, seed=5, image_size=32)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8 and len(captions) == 300
    again, again_captions, again_labels = sample_pretraining_pairs(300, seed=5, image_size=32)
    assert np.array_equal(images, again) and captions == again_captions
    assert all(np.array_equal(labels[k], again_labels[k], equal_nan=True) for k in labels)
    other, _, _ = sample_pretraining_pairs(300, seed=6, image_size=32)
    assert not np.array_equal(images, other)
    assert len(set(captions)) > 250
    motion_words = {verb.split()[0] for forms in MOTIONS.values() for verb, _ in forms} - {"turns"}
    assert not any(word in caption.lower().split() for caption in captions for word in motion_words)
    assert images.reshape(300, -1).std(axis=1).min() > 3                    # never a blank frame


def test_pretraining_labels_say_what_stills_show_and_captions_name():
    """image_* labels match the pixels (the labelled colour sits at the labelled position), text_*
    labels the caption's words; empty stills have no shape, colour or geometry."""
    n = 400
    images, captions, labels = sample_pretraining_pairs(n, seed=7, image_size=32)
    shapes, colours, scenes = list(SHAPES), list(COLOURS), list(SCENES)
    geometry = labels["image_geometry"]
    for i, caption in enumerate(captions):
        assert _names(caption, SCENES[scenes[labels["text_scene"][i]]][1])
        if labels["image_visible"][i] == 0:
            assert labels["image_shape"][i] == labels["image_colour"][i] == -1 and np.isnan(geometry[i]).all()
            continue
        assert _names(caption, SHAPES[shapes[labels["text_shape"][i]]])
        assert _names(caption, COLOURS[colours[labels["text_colour"][i]]][1])
        size = labels["text_size"][i]
        assert size < 0 or _names(caption, SIZES[list(SIZES)[size]])
        cell = labels["text_cell"][i]
        assert (cell >= 0) == any(word in caption for word in POSITION_WORDS.values())
        assert cell < 0 or POSITION_WORDS[CELLS[cell]] in caption
        x, y = geometry[i, :2]
        pixel = images[i, min(int(y * 32), 31), min(int(x * 32), 31)].astype(float)
        if labels["image_shape"][i] not in (shapes.index("ring"), shapes.index("cross")):  # hollow centres
            assert np.linalg.norm(pixel - COLOURS[colours[labels["image_colour"][i]]][0]) < 80, (caption, pixel)
    assert 0 < (labels["image_visible"] == 0).sum() < 0.1 * n
    assert np.isnan(geometry[labels["image_shape"] == shapes.index("circle"), 3:]).all()   # no angle to see
