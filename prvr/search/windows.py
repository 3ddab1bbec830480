"""Long videos as overlapping windows: which videos are cut, where the windows lie, which sampled frames
each one holds, and what a window's frame tokens stand for in the long video's time.

    settings = resolve_windows(cfg.frames, cfg.model.frame_tokens)   # {"long_after", "window", "stride", "fps"}
    window_starts(100.0, 30.0, 20.0)          # [0, 20, 40, 60, 70]: the last window ends at the video's end
    window_frames(200, 100.0, starts, 30.0)   # [(0, 60), (40, 100), ...]: frames j0..j1-1 of each window

The model resamples a video's frames to model.frame_tokens tokens, so a one-hour video resampled whole
gets one token per 1.9 minutes (32 tokens) and a short event vanishes in it. A video longer than
`long_after` seconds is instead sampled at `fps` frames per second over its whole length (no
max_frames cap) and cut into windows of `window` seconds, a new one every `stride` seconds
(stride < window: they overlap by window - stride); the last window is moved back to end at the
video's end, so it may overlap its predecessor more. Each window holds the frames whose time (bin
centre) falls in [start, start + window), is resampled to frame_tokens and encoded like a video of
its own; a frame token's span is its frames' bins in the long video's seconds.

Defaults (each can be set; the index records them):
  window     = frame_tokens / frames.fps: one sampled frame per frame token, the finest time
               resolution the model has (demo: 32 / 2 = 16 s; 128 tokens at 2 fps: 64 s);
  stride     = window / 2: every moment up to window / 2 long lies whole inside some window;
  long_after = frames.max_frames / frames.fps: the longest video the pipeline's own decoding samples at
               its full rate (demo and paper settings: 256 / 2 = 128 s); every shorter video is
               indexed exactly as the evaluation sees it, and only the videos whose frames the
               pipeline would thin out are windowed (at least `window`);
  fps        = frames.fps, or less where a window would hold more than max_frames frames
               (min(fps * window, max_frames) / window; with frames.num_frames set:
               min(num_frames, max_frames) / window, i.e. a window gets what a video gets).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from prvr.errors import PrvrError
from prvr.search.moments import token_spans

OFF = "off"  # long_after value that turns windows off
EPS = 1e-9  # seconds / bin units: float noise in the window arithmetic


def _seconds(name: str, value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PrvrError(f"index: {name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise PrvrError(f"index: {name} must be a positive, finite number of seconds, got {value!r}")
    return seconds


def window_rate(frames_cfg, window: float) -> float:
    """Frames per second sampled over a long video: a window gets what a video of its length gets."""
    per_window = frames_cfg.num_frames if frames_cfg.num_frames else frames_cfg.fps * window
    return min(per_window, frames_cfg.max_frames) / window


def resolve_windows(frames_cfg, frame_tokens: int, long_after=None, window=None, stride=None,
                    recorded: dict | None = None, extending: bool = False) -> dict | None:
    """The window settings of an index ({"long_after", "window", "stride", "fps"}, or None: off).
    Options left None take the extended index's own settings (`recorded`, None for an index made
    before windows existed) when `extending`, else the defaults of the module docstring."""
    if extending and long_after is None and window is None and stride is None:
        return recorded
    if isinstance(long_after, str) and long_after.strip().lower() == OFF:
        return None
    window = _seconds("window", window) if window is not None else frame_tokens / frames_cfg.fps
    stride = _seconds("stride", stride) if stride is not None else window / 2
    if long_after is None:
        long_after = max(frames_cfg.max_frames / frames_cfg.fps, window)
    long_after = _seconds("long_after", long_after)
    if stride > window:
        raise PrvrError(f"index: stride ({stride:g} s) must be at most the window ({window:g} s), "
                        f"or parts of long videos are never seen")
    if long_after < window:
        raise PrvrError(f"index: long_after ({long_after:g} s) must be at least the window ({window:g} s)")
    rate = window_rate(frames_cfg, window)
    if rate * window < 1:
        raise PrvrError(f"index: a window of {window:g} s holds no frame at {rate:g} frames per second")
    return {"long_after": long_after, "window": window, "stride": stride, "fps": rate}


def is_long(duration: float, settings: dict | None) -> bool:
    """Whether a video of `duration` seconds is windowed under `settings`."""
    return settings is not None and duration > settings["long_after"]


def window_starts(duration: float, window: float, stride: float) -> np.ndarray:
    """(W,) start seconds: 0, stride, 2 stride, ... while the window fits, then one ending at
    `duration` when the last regular window stops short of it; [0] for a video no longer than a window."""
    if duration <= window + EPS:
        return np.zeros(1)
    starts = np.arange(int(np.floor((duration - window) / stride + EPS)) + 1) * stride  # start <= D - W
    if starts[-1] + window < duration - EPS:
        starts = np.append(starts, duration - window)
    return starts.astype(np.float64)


def window_frames(n_frames: int, duration: float, starts: np.ndarray, window: float) -> list[tuple[int, int]]:
    """(j0, j1) per window: the frames j0..j1-1, of `n_frames` sampled at the centres of equal bins
    of `duration`, whose centre lies in [start, start + window); the nearest frame when none does."""
    bin_len = duration / n_frames
    out = []
    for start in np.asarray(starts, dtype=np.float64):
        j0 = max(0, math.ceil(start / bin_len - 0.5 - EPS))
        j1 = min(n_frames, math.ceil((start + window) / bin_len - 0.5 - EPS))
        if j1 <= j0:  # a window shorter than a bin: the frame nearest to its centre
            j0 = min(n_frames - 1, max(0, int((start + window / 2) / bin_len)))
            j1 = j0 + 1
        out.append((j0, j1))
    return out


def window_spans(j0: int, j1: int, bin_len: float, n_tokens: int) -> np.ndarray:
    """(n_tokens, 2) seconds of the long video: token_spans of frames j0..j1-1 seen as a video of
    their own (j1 - j0 bins), shifted to where those bins lie."""
    return token_spans(j1 - j0, (j1 - j0) * bin_len, n_tokens) + j0 * bin_len


def group_max(values: torch.Tensor, row_video: torch.Tensor, n_videos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video, the max of its rows' values and the first row reaching it: values (..., R), row_video
    (R,) int64 -> ((..., V) maxima, (..., V) int64 rows). NaN rows (not scored) are skipped; a video
    with no scored row gets NaN and row -1."""
    shape, rows = values.shape[:-1], values.shape[-1]
    index = row_video.expand(*shape, rows)
    clean = torch.where(torch.isnan(values), torch.full_like(values, -math.inf), values)
    best = torch.full((*shape, n_videos), -math.inf, dtype=values.dtype).scatter_reduce(
        -1, index, clean, "amax", include_self=True)  # (..., V)
    reached = (clean == best.gather(-1, index)) & ~torch.isnan(values)  # (..., R)
    candidates = torch.where(reached, torch.arange(rows).expand(*shape, rows), torch.full_like(index, rows))
    first = torch.full((*shape, n_videos), rows, dtype=torch.int64).scatter_reduce(
        -1, index, candidates, "amin", include_self=True)  # (..., V)
    missing = first == rows
    return best.masked_fill(missing, math.nan), first.masked_fill(missing, -1)
