"""The generated multi-event demo corpus: H.264 videos, TVR-style annotations, hidden event labels.

Each video is a sequence of `min_events..max_events` events with background filler (the scene
alone, `gap_seconds`) before, between and after them; an event is a coloured shape doing a motion
over a scene background, and has one caption (naming shape, colour, motion and scene) and a time
span, so a caption's moment is a small part of its video (default: 19 % on average). Event kinds
(shape, motion) come from a shared vocabulary (prvr.demo.vocabulary), so one video holds
semantically different events and the same kind recurs across videos with other colours, sizes
and scenes: the conditions of the paper's "semantic collapse", and of PRVR's difficulty (a video
that has a caption's shape, colour, motion and scene somewhere need not have them in one event).
Every video has its own random stream (seed, split, index), so the output is byte-identical for a
given config and changing one split's size changes no other video.

    python -c "from pathlib import Path; from prvr.config import CorpusConfig; \
from prvr.demo.synthetic import generate_corpus; generate_corpus(CorpusConfig(), Path('data/demo'))"

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
from prvr.demo import render
from prvr.demo.vocabulary import (COLOURS, KINDS, ROTATION_ORDER, SCENES, SIZE_CHANGING, SIZE_RADIUS,
                                  _pick, event_caption, kind_name, visible_colours)
from prvr.errors import PrvrError
from prvr.io import atomic_path

SPLITS = ("train", "val", "test")
_VIDEO_STREAM = 0x5649       # tag of the videos' random streams (the pretraining stills have their own)
# desc_id = split offset + video index * _IDS_PER_VIDEO + event index: stable when a split grows
_IDS_PER_VIDEO, _IDS_PER_SPLIT = 100, 1_000_000
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
        (not 0 <= cfg.gap_seconds[0] <= cfg.gap_seconds[1],
         "gap_seconds must be (low, high) with 0 <= low <= high"),
        (not 0 <= cfg.scene_keep <= 1, "scene_keep must be in [0, 1]"),
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
    size = "none" if motion in SIZE_CHANGING else _pick(rng, ("small", "large"))
    return {"shape": shape, "motion": motion, "scene": scene, "size": size,
            "colour": _pick(rng, visible_colours(scene))}


def sample_layout(cfg: CorpusConfig, rng: np.random.Generator) -> tuple[list[Event], int]:
    """The events of one video and its length in frames.

    Distinct kinds, each event in the previous event's scene with probability cfg.scene_keep (else
    another scene), event lengths log-uniform in cfg.event_seconds,
    background filler (uniform in cfg.gap_seconds) before every event and after the last.
    """
    def gap() -> int:
        return round(rng.uniform(*cfg.gap_seconds) * cfg.fps)

    n_events = int(rng.integers(cfg.min_events, cfg.max_events + 1))
    kinds = [KINDS[k] for k in rng.choice(len(KINDS), n_events, replace=False)]
    scene = _pick(rng, list(SCENES))
    events, start = [], 0
    for kind in kinds:
        if events and rng.random() >= cfg.scene_keep:
            scene = _pick(rng, [s for s in SCENES if s != scene])
        attrs = _sample_attributes(rng, kind, scene)
        start += gap()
        n_frames = max(1, round(np.exp(rng.uniform(*np.log(cfg.event_seconds))) * cfg.fps))
        events.append(Event(start_frame=start, n_frames=n_frames, caption=event_caption(attrs, rng), **attrs))
        start += n_frames
    return events, start + gap()


def render_video(events: list[Event], n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels of a video: uint8 (n_frames, size, size, 3); filler frames show the scene alone."""
    backgrounds = {}
    for event in events:                     # one background per scene: a kept scene keeps its pixels
        if event.scene not in backgrounds:
            backgrounds[event.scene] = render.scene_background(event.scene, rng, size)
    frames = np.empty((n_frames, size, size, 3), np.float32)
    frames[:] = backgrounds[events[0].scene]
    for k, event in enumerate(events):
        background = backgrounds[event.scene]
        end = events[k + 1].start_frame if k + 1 < len(events) else n_frames
        frames[event.start_frame:end] = background           # this event and the filler after it
        rgb = np.clip(np.array(COLOURS[event.colour][0]) + rng.integers(-15, 16, 3), 0, 255)
        track = render.sample_track(event.motion, event.n_frames, rng, ROTATION_ORDER[event.shape])
        frames[event.start_frame:event.start_frame + event.n_frames] = render.render_clip(
            background, event.shape, rgb, SIZE_RADIUS[event.size], track)
    if rng.random() < render.DISTRACTOR_PROB:
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
            stream = h264_stream(container, fps, frames.shape[2], frames.shape[1])
            for index, pixels in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())


def h264_stream(container, fps: int, width: int, height: int):
    """The demo's H.264 stream (write_mp4's settings) added to an open output container."""
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    codec = stream.codec_context
    codec.thread_count = 1
    codec.flags |= av.codec.context.Flags.bitexact
    codec.max_b_frames = 0
    codec.gop_size = 2 * fps
    codec.options = {"crf": "23", "preset": "veryfast", "x264-params": "mbtree=0"}
    return stream


def _query_rows(vid: str, split: str, index: int, events: list[Event], n_frames: int, fps: int):
    """(annotation rows, label rows) of one video."""
    duration = n_frames / fps
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
        events, n_frames = sample_layout(cfg, layout_rng)
        write_mp4(render_video(events, n_frames, cfg.size, pixel_rng), cfg.fps,
                  out_dir / "videos" / f"{vid}.mp4")
        queries, event_labels = _query_rows(vid, split, index, events, n_frames, cfg.fps)
        rows[split].extend(queries)
        labels.extend(event_labels)
    for split in SPLITS:
        _write_jsonl(out_dir / "annotations" / f"{split}.jsonl", rows[split])
    _write_jsonl(out_dir / "annotations" / "event_labels.jsonl", labels)
