"""Which frames to decode: targets uniform in presentation time, each mapped to the frame shown then.

    starts = np.array([0.0, 0.04, 0.08, 1.0, 2.0])   # frame start times (s), presentation order
    select_frames(starts, fps=1.0)   # D = 3 s -> targets [0.5, 1.5, 2.5] s -> indices [2, 3, 4]

The n targets are the centres of n equal bins of the video's duration, t_i = (i + 0.5) * D / n,
and each target reads the frame that is on screen at t_i: the last frame whose start is <= t_i
(not the nearest start, which would pick a frame before it is displayed). On a variable-frame-rate
file this keeps the samples evenly spread in time where index-uniform sampling (`sample_indices`)
would crowd them into the densely-framed stretches.

A constant-frame-rate file (every start within `GRID_JITTER_S` of a regular grid k * step) is
sampled on that grid, i.e. exactly as `sample_indices` does: containers round timestamps to their
time base (mkv: 1 ms), and a target that lands on a frame start would otherwise flip to the
previous frame whenever the rounding went up.

Duration D is measured from the first frame's start to the end of the last frame, whose display
time is taken to be the gap before it: containers' own last-frame durations are not reliable
(mp4 muxers write a 1-tick last sample, mkv repeats the nominal 1/fps, decord reports a constant).
"""
from __future__ import annotations

import numpy as np

# decord reports float32 seconds (resolution 6e-5 s at 1000 s): a target this close to a frame's
# start counts as reaching it, so both backends agree on ties.
TIE_TOLERANCE_S = 1e-4
# Starts that deviate from a regular grid by at most this (or a quarter step, if less) are
# timestamp rounding, not a variable frame rate: mkv stores milliseconds, an error of up to 0.5 ms.
GRID_JITTER_S = 1e-3


def _sample_count(n_frames: int, duration: float | None, fps: float | None,
                  num_frames: int | None, max_frames: int | None) -> int:
    """n: num_frames, else round(duration * fps) capped at n_frames, else n_frames; then max_frames."""
    if num_frames is not None:
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        n = num_frames
    elif fps is not None:
        if fps <= 0 or duration is None or not duration >= 0:
            raise ValueError(f"fps and duration must be positive, got {fps} and {duration}")
        n = min(n_frames, round(duration * fps))
    else:
        n = n_frames
    if max_frames is not None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        n = min(n, max_frames)
    return max(1, n)


def sample_indices(n_total: int, native_fps: float, fps: float | None = None,
                   num_frames: int | None = None, max_frames: int | None = None) -> np.ndarray:
    """Index-uniform sampling: the centre frame of each of n equal bins of the frame-index range.

    Exact for constant-frame-rate videos only (it is what `select_frames` returns for them); kept
    as the reference the time-based sampling is checked against. n is `num_frames` when given
    (repeating frames if the video has fewer), otherwise round(duration * fps) capped at `n_total`,
    otherwise every frame; `max_frames` caps n in all cases; at least one frame is returned.
    """
    if n_total <= 0:
        raise ValueError(f"cannot sample from a video with {n_total} frames")
    if fps is not None and num_frames is None and not native_fps > 0:
        raise ValueError(f"fps and native_fps must be positive, got {fps} and {native_fps}")
    duration = n_total / native_fps if native_fps > 0 else None
    n = _sample_count(n_total, duration, fps, num_frames, max_frames)
    bin_centres = (np.arange(n) + 0.5) * (n_total / n)  # (n,) in frame units
    return np.minimum(np.floor(bin_centres).astype(np.int64), n_total - 1)


def sample_times(duration: float, fps: float | None = None, num_frames: int | None = None,
                 max_frames: int | None = None, n_frames: int | None = None) -> np.ndarray:
    """(n,) target times in seconds from the first frame: the centres of n equal bins of `duration`.

    n as in `sample_indices`: `num_frames`, else round(duration * fps) capped at `n_frames` (the
    video's frame count, when known), then `max_frames`; at least 1. One of fps / num_frames is needed
    unless n_frames is given (then n = n_frames).
    """
    if not duration >= 0:
        raise ValueError(f"duration must be >= 0, got {duration}")
    if num_frames is None and fps is None and n_frames is None:
        raise ValueError("sample_times needs fps, num_frames or n_frames")
    cap = n_frames if n_frames is not None else np.iinfo(np.int64).max
    n = _sample_count(cap, duration, fps, num_frames, max_frames)
    return (np.arange(n) + 0.5) * (duration / n)


def indices_at_times(frame_starts: np.ndarray, times: np.ndarray,
                     tolerance: float = TIE_TOLERANCE_S) -> np.ndarray:
    """(n,) int64 index of the frame on screen at each time: the last frame with start <= t + tolerance.

    frame_starts are in presentation order; times before the first start read the first frame.
    """
    starts = np.asarray(frame_starts, dtype=np.float64)
    if starts.ndim != 1 or len(starts) == 0:
        raise ValueError(f"need a non-empty 1-d array of frame starts, got shape {starts.shape}")
    starts = np.maximum.accumulate(starts)  # a stray out-of-order stamp must not break the search
    idx = np.searchsorted(starts, np.asarray(times, dtype=np.float64) + tolerance, side="right") - 1
    return np.clip(idx, 0, len(starts) - 1).astype(np.int64)


def presentation_duration(frame_starts: np.ndarray, native_fps: float | None = None) -> float:
    """Seconds from the first frame's start to the end of the last frame.

    The last frame lasts as long as the last positive gap between starts; a single frame lasts
    1 / native_fps (0 when that is unknown).
    """
    starts = np.asarray(frame_starts, dtype=np.float64)
    if len(starts) == 0:
        raise ValueError("no frames")
    gaps = np.diff(starts)
    gaps = gaps[gaps > 0]
    if len(gaps):
        last = float(gaps[-1])
    else:
        last = 1.0 / native_fps if native_fps and native_fps > 0 else 0.0
    return float(starts[-1] - starts[0]) + last


def select_frames(frame_starts: np.ndarray, fps: float | None = None, num_frames: int | None = None,
                  max_frames: int | None = None, native_fps: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, target times) of the frames to decode, times in seconds from the first frame.

    With neither fps nor num_frames, every frame (uniformly thinned to max_frames if that is less).
    `native_fps` (the container's nominal rate) is only used as the exact rate of a constant-rate
    grid it matches, and for the length of a one-frame video.
    """
    starts = np.asarray(frame_starts, dtype=np.float64)
    if starts.ndim != 1 or len(starts) == 0:
        raise ValueError("cannot sample from a video with 0 frames")
    starts = starts - starts[0]  # streams whose first timestamp is not 0
    n_total = len(starts)
    if fps is None and num_frames is None and (max_frames is None or max_frames >= n_total):
        return np.arange(n_total, dtype=np.int64), starts
    step = regular_step(starts)
    if step is not None:  # constant frame rate: index arithmetic is exact, rounded stamps are not
        # the nominal rate, when it is this grid's, is exact (19.62, not float32's 19.6200003)
        rate = native_fps if native_fps and abs(native_fps * step - 1) < 1e-4 else 1.0 / step
        indices = sample_indices(n_total, rate, fps, num_frames, max_frames)
        return indices, (np.arange(len(indices)) + 0.5) * (n_total / rate / len(indices))
    duration = presentation_duration(starts, native_fps)
    times = sample_times(duration, fps, num_frames, max_frames, n_frames=n_total)
    return indices_at_times(starts, times), times


def regular_step(frame_starts: np.ndarray, jitter: float = GRID_JITTER_S) -> float | None:
    """The frame interval if every start is within `jitter` (or step / 4) of start_0 + k * step, else None.

    None for fewer than two frames or zero-length videos.
    """
    starts = np.asarray(frame_starts, dtype=np.float64)
    if len(starts) < 2 or not starts[-1] > starts[0]:
        return None
    step = (starts[-1] - starts[0]) / (len(starts) - 1)
    grid = starts[0] + np.arange(len(starts)) * step
    return float(step) if np.abs(starts - grid).max() <= min(jitter, step / 4) else None
