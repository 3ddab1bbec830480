"""The generated multi-event demo corpus: H.264 videos, TVR-style annotations, hidden event labels.

Each video is a sequence of `min_events..max_events` events; an event is a coloured shape doing a
motion over a scene background, and has one caption and a time span. Event kinds (shape, motion)
come from a shared vocabulary (prvr.data.vocabulary), so one video holds semantically different
events and the same kind recurs across videos: the conditions of the paper's "semantic collapse".
Every video has its own random stream (seed, split, index), so the output is byte-identical for a
given config and changing one split's size changes no other video.

    python -c "from pathlib import Path; from prvr.config import CorpusConfig; \
from prvr.data.synthetic import generate_corpus; generate_corpus(CorpusConfig(), Path('data/demo'))"

writes data/demo/videos/demo_<split>_<i>.mp4, data/demo/annotations/{train,val,test}.jsonl and
data/demo/annotations/event_labels.jsonl.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from prvr.config import CorpusConfig
from prvr.errors import PrvrError
from prvr.data import render
from prvr.data.vocabulary import (COLOURS, KINDS, POSITION_WORDS, SCENES, SHAPES, SIZE_CHANGING,
                                  SIZE_RADIUS, SIZES, _article, _sentence, event_caption, kind_name,
                                  visible_colours)
from prvr.io import atomic_path

SPLITS = ("train", "val", "test")
# tags that keep the random streams of videos and of pretraining frames apart
_VIDEO_STREAM, _PRETRAIN_STREAM = 0x5649, 0x5052
# desc_id = split offset + video index * _IDS_PER_VIDEO + event index: stable when a split grows
_IDS_PER_VIDEO, _IDS_PER_SPLIT = 100, 1_000_000
SCENE_KEEP_PROB = 0.5        # chance that an event stays in the previous event's scene
DISTRACTOR_PROB = 0.7        # chance that a video/frame has a wandering grey dot
PRETRAIN_GROUP = 8           # consecutive pretraining pairs sharing scene and colour (hard negatives)
# (shapes, grid cells, sizes) varied inside a pretraining group; each product is PRETRAIN_GROUP
_GROUP_LAYOUTS = ((4, 2, 1), (2, 4, 1), (2, 2, 2), (4, 1, 2))
EMPTY_PROB = 0.2             # chance that a group's last still is the empty scene (blinking shapes)
_EMPTY_WORDS = ("nothing", "an empty scene", "no shape", "just the background")
# frame sides (even, 16..160) that decord 0.6 returns with 4 or 6 channels instead of 3
DECORD_BAD_SIZES = (16, 24, 48, 72)


class CorpusError(PrvrError, ValueError):
    """The corpus config cannot be generated; the message names the field."""


@dataclass(frozen=True)
class Event:
    """One event of a demo video; frames [start_frame, start_frame + n_frames)."""
    shape: str
    colour: str
    motion: str
    scene: str
    size: str            # "small", "large", or "none" for motions that change the size
    start_frame: int
    n_frames: int
    caption: str

    @property
    def kind(self) -> str:
        return kind_name(self.shape, self.motion)


def check_config(cfg: CorpusConfig) -> None:
    """Raise CorpusError naming the first field that cannot work."""
    lo, hi = cfg.event_seconds
    problems = [
        (min(cfg.n_train, cfg.n_val, cfg.n_test) < 0, "n_train/n_val/n_test must be >= 0"),
        (max(cfg.n_train, cfg.n_val, cfg.n_test) > 9999, "n_train/n_val/n_test must be <= 9999"),
        (not 1 <= cfg.min_events <= cfg.max_events, "need 1 <= min_events <= max_events"),
        (cfg.max_events > min(_IDS_PER_VIDEO, len(KINDS)),
         f"max_events must be <= {min(_IDS_PER_VIDEO, len(KINDS))}"),
        (not 0 < lo <= hi, "event_seconds must be (low, high) with 0 < low <= high"),
        (cfg.fps < 1, "fps must be >= 1"),
        (cfg.size < 16 or cfg.size % 2, "size must be an even number >= 16 (yuv420p)"),
        (cfg.size in DECORD_BAD_SIZES,
         f"size {cfg.size} is decoded wrongly by decord 0.6 (bad sizes: {DECORD_BAD_SIZES})"),
    ]
    for bad, message in problems:
        if bad:
            raise CorpusError(f"corpus config: {message}")


def video_ids(cfg: CorpusConfig, split: str) -> list[str]:
    """Ids of the videos of `split` ("train", "val" or "test"), without generating anything."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    count = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    return [f"demo_{split}_{i:04d}" for i in range(count)]


def _video_rngs(cfg: CorpusConfig, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """Two independent streams per video: layout + captions, and pixels."""
    seq = np.random.SeedSequence([cfg.seed, _VIDEO_STREAM, SPLITS.index(split), index])
    return tuple(np.random.default_rng(child) for child in seq.spawn(2))


def _sample_attributes(rng: np.random.Generator, kind: tuple[str, str], scene: str) -> dict:
    shape, motion = kind
    colours = visible_colours(scene)
    size = "none" if motion in SIZE_CHANGING else ("small", "large")[int(rng.integers(2))]
    return {"shape": shape, "motion": motion, "scene": scene, "size": size,
            "colour": colours[int(rng.integers(len(colours)))]}


def sample_events(cfg: CorpusConfig, rng: np.random.Generator) -> list[Event]:
    """The events of one video: distinct kinds, scenes that sometimes persist, contiguous spans."""
    n_events = int(rng.integers(cfg.min_events, cfg.max_events + 1))
    kinds = [KINDS[k] for k in rng.choice(len(KINDS), n_events, replace=False)]
    scenes = list(SCENES)
    scene = scenes[int(rng.integers(len(scenes)))]
    events, start = [], 0
    for kind in kinds:
        if events and rng.random() >= SCENE_KEEP_PROB:
            others = [s for s in scenes if s != scene]
            scene = others[int(rng.integers(len(others)))]
        attrs = _sample_attributes(rng, kind, scene)
        n_frames = max(1, round(rng.uniform(*cfg.event_seconds) * cfg.fps))
        events.append(Event(start_frame=start, n_frames=n_frames,
                            caption=event_caption(attrs, rng), **attrs))
        start += n_frames
    return events


def render_video(events: list[Event], size: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels of a video: uint8 (n_frames, size, size, 3)."""
    clips, background, previous_scene = [], None, None
    for event in events:
        if event.scene != previous_scene:        # a kept scene keeps its exact background
            background = render.scene_background(event.scene, rng, size)
            previous_scene = event.scene
        rgb = np.clip(np.array(COLOURS[event.colour][0]) + rng.integers(-15, 16, 3), 0, 255)
        track = render.sample_track(event.motion, event.n_frames, fps, rng)
        clips.append(render.render_clip(background, event.shape, rgb, SIZE_RADIUS[event.size], track))
    frames = np.concatenate(clips)
    if rng.random() < DISTRACTOR_PROB:
        render.add_distractor(frames, rng)
    return render.finish_frames(frames, render.brightness_drift(len(frames), rng), rng)


def write_mp4(frames: np.ndarray, fps: int, path: Path) -> None:
    """Encode uint8 (T, H, W, 3) RGB frames as H.264 (libx264, yuv420p) MP4, atomically.

    Single-threaded encoder, bit-exact muxer flags and no B-frames: the same frames always give
    the same bytes, and decoders report exactly T frames. x264's macroblock-tree rate control is
    off because it made the bytes depend on uninitialised memory for some frame sizes (seen at
    40 and 80 pixels).
    """
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            codec = stream.codec_context
            codec.thread_count = 1
            codec.flags |= av.codec.context.Flags.bitexact
            codec.max_b_frames = 0
            codec.gop_size = 2 * fps
            codec.options = {"crf": "23", "preset": "veryfast", "x264-params": "mbtree=0"}
            for index, pixels in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())


def _query_rows(vid: str, split: str, index: int, events: list[Event], fps: int):
    """(annotation rows, label rows) of one video."""
    duration = sum(e.n_frames for e in events) / fps
    queries, labels = [], []
    for k, event in enumerate(events):
        desc_id = SPLITS.index(split) * _IDS_PER_SPLIT + index * _IDS_PER_VIDEO + k
        span = [event.start_frame / fps, (event.start_frame + event.n_frames) / fps]
        queries.append({"vid_name": vid, "duration": duration, "ts": span,
                        "desc": event.caption, "desc_id": desc_id})
        attrs = {f: v for f, v in asdict(event).items() if f not in ("caption", "start_frame", "n_frames")}
        labels.append({"desc_id": desc_id, "vid_name": vid, "split": split, "event_index": k,
                       "kind": event.kind, **attrs})
    return queries, labels


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def generate_corpus(cfg: CorpusConfig, out_dir: Path) -> None:
    """Write every split's videos, annotations/{split}.jsonl and annotations/event_labels.jsonl."""
    check_config(cfg)
    out_dir = Path(out_dir)
    jobs = [(split, i, vid) for split in SPLITS for i, vid in enumerate(video_ids(cfg, split))]
    rows = {split: [] for split in SPLITS}
    labels = []
    for split, index, vid in tqdm(jobs, desc="demo corpus", unit="video"):
        layout_rng, pixel_rng = _video_rngs(cfg, split, index)
        events = sample_events(cfg, layout_rng)
        write_mp4(render_video(events, cfg.size, cfg.fps, pixel_rng), cfg.fps,
                  out_dir / "videos" / f"{vid}.mp4")
        queries, event_labels = _query_rows(vid, split, index, events, cfg.fps)
        rows[split].extend(queries)
        labels.extend(event_labels)
    for split in SPLITS:
        _write_jsonl(out_dir / "annotations" / f"{split}.jsonl", rows[split])
    _write_jsonl(out_dir / "annotations" / "event_labels.jsonl", labels)


def _background_bank(rng: np.random.Generator, image_size: int, per_scene: int) -> dict:
    return {scene: [render.scene_background(scene, rng, image_size) for _ in range(per_scene)]
            for scene in SCENES}


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _group_background(rng: np.random.Generator, bank: dict, scene: str, image_size: int) -> np.ndarray:
    """One instance of `scene` from the bank, randomly mirrored and rolled sideways."""
    background = _pick(rng, bank[scene])
    if rng.random() < 0.5:
        background = background[:, ::-1]
    return np.roll(background, int(rng.integers(image_size)), axis=1)


def _cell_position(rng: np.random.Generator, cell: tuple[int, int]) -> tuple[float, float]:
    """(x, y) drawn well inside a cell (row, col) of the 3 x 3 grid that POSITION_WORDS names."""
    row, col = cell
    x = rng.uniform(max(0.12, col / 3 + 0.04), min(0.88, (col + 1) / 3 - 0.04))
    y = rng.uniform(max(0.12, row / 3 + 0.04), min(0.88, (row + 1) / 3 - 0.04))
    return float(x), float(y)


def _radius(rng: np.random.Generator, size: str) -> tuple[float, str]:
    """(radius as a fraction of the side, size word class or "none"): the corpus' sizes, and for
    "none" the range that growing and shrinking shapes pass through (named when clearly small/large)."""
    if size != "none":
        return SIZE_RADIUS[size] * rng.uniform(0.85, 1.15), size
    radius = SIZE_RADIUS["none"] * rng.uniform(0.45, 1.55)
    return radius, "small" if radius < 0.1 else "large" if radius > 0.16 else "none"


def _still_caption(rng: np.random.Generator, shape: str, colour: str, size: str, cell, scene: str,
                   name_size: bool, name_cell: bool) -> str:
    """'A small crimson box in the top left on the grass.': shape always; size and position when
    asked (what tells the frame from its group), colour and scene most of the time."""
    words = [_pick(rng, SIZES[size])] if name_size and size in SIZES else []
    if rng.random() < 0.9:
        words.append(_pick(rng, COLOURS[colour][1]))
    noun = " ".join(words + [_pick(rng, SHAPES[shape])])
    where = POSITION_WORDS[cell] if name_cell or rng.random() < 0.5 else ""
    scene_words = _pick(rng, SCENES[scene][1]) if rng.random() < 0.8 else ""
    text = (f"{scene_words}, {_article(noun)} {noun} {where}" if scene_words and rng.random() < 0.3
            else f"{_article(noun)} {noun} {where} {scene_words}")
    return _sentence(text)


def _still_group(rng: np.random.Generator, bank: dict, image_size: int, count: int):
    """`count` clean float32 (H, W, 3) stills sharing scene, background and colour, and their captions.

    The stills are each other's hard negatives: every combination of a few shapes x grid cells x
    sizes (_GROUP_LAYOUTS) appears once, so a frame differs from some of its group in shape alone,
    from others in position or size alone, and the captions name exactly what differs. Sometimes
    the last still is the empty scene (what a blinking shape leaves).
    """
    scene = _pick(rng, list(SCENES))
    colour = _pick(rng, visible_colours(scene))
    background = _group_background(rng, bank, scene, image_size)
    rgb = np.clip(np.array(COLOURS[colour][0]) + rng.integers(-15, 16, 3), 0, 255)
    n_shapes, n_cells, n_sizes = _GROUP_LAYOUTS[int(rng.integers(len(_GROUP_LAYOUTS)))]
    shapes = [list(SHAPES)[k] for k in rng.choice(len(SHAPES), n_shapes, replace=False)]
    cells = [list(POSITION_WORDS)[k] for k in rng.choice(len(POSITION_WORDS), n_cells, replace=False)]
    sizes = ["small", "large"] if n_sizes == 2 else [_pick(rng, ("small", "large", "none"))]
    combos = [(s, c, z) for s in shapes for c in cells for z in sizes]
    order = rng.permutation(len(combos))
    frames, captions = [], []
    for k in order[:count]:
        shape, cell, size = combos[k]
        x, y = _cell_position(rng, cell)
        radius, size_word = _radius(rng, size)
        angle = rng.uniform(-np.pi, np.pi) if rng.random() < 0.3 else rng.uniform(-0.6, 0.6)
        track = render.Track(np.array([x]), np.array([y]), np.array([1.0]), np.array([angle]), np.array([True]))
        frames.append(render.render_clip(background, shape, rgb, radius, track)[0])
        captions.append(_still_caption(rng, shape, colour, size_word, cell, scene,
                                       name_size=n_sizes == 2 or rng.random() < 0.6, name_cell=n_cells > 1))
    if count > 1 and rng.random() < EMPTY_PROB:
        frames[-1] = background.copy()
        captions[-1] = _sentence(f"{_pick(rng, _EMPTY_WORDS)} {_pick(rng, SCENES[scene][1])}")
    for frame in frames:
        if rng.random() < DISTRACTOR_PROB:
            render.add_distractor(frame[None], rng)
    return frames, captions


def sample_pretraining_pairs(n: int, seed: int, image_size: int) -> tuple[np.ndarray, list[str]]:
    """`n` still frames (n, image_size, image_size, 3) uint8 and a caption of each.

    Same vocabulary and renderer as the corpus, from a random stream of its own; the captions say
    what a single frame shows (shape, colour, size, position, scene), never a motion. Pairs come in
    consecutive groups of PRETRAIN_GROUP (`_still_group`: same scene and colour, differing in shape,
    position or size) that pretraining keeps together in a batch as each other's hard negatives.
    """
    if n < 0 or image_size < 8:
        raise CorpusError(f"pretraining pairs: need n >= 0 and image_size >= 8, got {n}, {image_size}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PRETRAIN_STREAM]))
    bank = _background_bank(rng, image_size, per_scene=12)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    captions = []
    for begin in tqdm(range(0, n, 1024), desc="pretraining frames", unit="chunk"):
        count = min(1024, n - begin)
        chunk = []
        while len(chunk) < count:
            frames, texts = _still_group(rng, bank, image_size, min(PRETRAIN_GROUP, count - len(chunk)))
            chunk.extend(frames)
            captions.extend(texts)
        gains = rng.uniform(0.92, 1.08, count)         # lighting varies between stills
        images[begin:begin + count] = render.finish_frames(np.stack(chunk), gains, rng)
    return images, captions


sample_pretraining_pairs.group = PRETRAIN_GROUP  # read by prvr.features.pretrain to batch whole groups
