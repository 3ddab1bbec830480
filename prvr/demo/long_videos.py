"""Long demo videos: generated demo clips played one after another in one H.264 file, with their events'
captions as queries whose spans are moved to the long video's time (what bench/bench_long_videos.py
measures search on, prvr.search.windows).

    n = clips_needed(cfg, 3600.0, 20)                    # test clips of corpus cfg 20 one-hour videos take
    clips, rows = generate_clips(cfg, n, Path("pool"))   # their files; their annotation rows by clip id
    plan = plan_long_videos(seconds, 300.0, 20)          # clip indices of 20 five-minute videos
    long_rows = write_long_video([clips[i] for i in plan[0]], [rows[clips[i].stem] for i in plan[0]],
                                 Path("long/long_005m_00.mp4"), "long_005m_00", fps=cfg.fps)

A long video of length L takes consecutive clips of the pool until it lasts at least L seconds; the
long videos of one length use disjoint clips. Frames are copied as decoded (every frame, native size)
and encoded again with the demo's settings (prvr.demo.synthetic.h264_stream), so clip k's frame i
is frame (frames of clips 0..k-1) + i of the long video and its spans shift by that many frames.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from prvr.config import CorpusConfig
from prvr.demo.synthetic import _video_rngs, generate_corpus, h264_stream, sample_layout, video_ids
from prvr.errors import PrvrError
from prvr.io import atomic_path
from prvr.video.decoding import decode_video


def plan_long_videos(clip_seconds: list[float], length_s: float, count: int) -> list[list[int]]:
    """`count` lists of consecutive clip indices, each list lasting at least `length_s` seconds;
    a one-line PrvrError when the pool is too short."""
    plan, next_clip = [], 0
    for _ in range(count):
        clips, total = [], 0.0
        while total < length_s:
            if next_clip >= len(clip_seconds):
                raise PrvrError(f"long videos: {len(clip_seconds)} clips last too little for {count} videos "
                                f"of {length_s:g} s")
            clips.append(next_clip)
            total += clip_seconds[next_clip]
            next_clip += 1
        plan.append(clips)
    return plan


def clips_needed(cfg: CorpusConfig, length_s: float, count: int, step: int = 256) -> int:
    """How many test clips of corpus `cfg` the longest length's plan uses."""
    frames: list[int] = []
    while True:
        frames += clip_frames_from(cfg, len(frames), step)
        try:
            plan = plan_long_videos([f / cfg.fps for f in frames], length_s, count)
        except PrvrError:
            continue
        return plan[-1][-1] + 1


def clip_frames_from(cfg: CorpusConfig, first: int, count: int) -> list[int]:
    """The frame counts of test clips first..first+count-1 of corpus `cfg`, from their layouts alone
    (nothing rendered): what generate_corpus writes."""
    return [sample_layout(cfg, _video_rngs(cfg, "test", i)[0])[1] for i in range(first, first + count)]


def generate_clips(cfg: CorpusConfig, count: int, out_dir: Path) -> tuple[list[Path], dict[str, list[dict]]]:
    """`count` demo test clips of corpus `cfg` (generate_corpus, skipped when its annotations are
    already there for that many): their files and their annotation rows by clip id."""
    cfg = replace(cfg, n_train=0, n_val=0, n_test=count)
    annotations = out_dir / "annotations" / "test.jsonl"
    ids = video_ids(cfg, "test")
    if not (annotations.exists() and all((out_dir / "videos" / f"{v}.mp4").exists() for v in ids)):
        generate_corpus(cfg, out_dir)
    rows: dict[str, list[dict]] = {v: [] for v in ids}
    for line in annotations.read_text().splitlines():
        row = json.loads(line)
        if row["vid_name"] in rows:
            rows[row["vid_name"]].append(row)
    return [out_dir / "videos" / f"{v}.mp4" for v in ids], rows


def write_long_video(clips: list[Path], clip_rows: list[list[dict]], out: Path, vid: str, fps: int) -> list[dict]:
    """Write the clips one after another as `out` (H.264, `fps`); returns the clips' annotation rows
    with vid_name `vid`, their ts shifted into the long video and its duration."""
    rows, offset = [], 0
    with atomic_path(out) as tmp, av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = None
        for clip, clip_row in zip(clips, clip_rows):
            frames = decode_video(clip)  # (T, H, W, 3) every frame, native size
            stream = stream or h264_stream(container, fps, frames.shape[2], frames.shape[1])
            for pixels in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts = offset
                container.mux(stream.encode(frame))
                offset += 1
            start = offset - len(frames)
            rows += [{**row, "vid_name": vid, "ts": [start / fps + row["ts"][0], start / fps + row["ts"][1]]}
                     for row in clip_row]
        container.mux(stream.encode())
    return [{**row, "duration": offset / fps} for row in rows]
