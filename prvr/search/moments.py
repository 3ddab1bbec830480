"""Moments in seconds: which span of a video a frame token stands for, the best moment for a query
from its frame-token similarities, and how well predicted moments agree with ground truth.

    spans = token_spans(n_frames=40, duration=20.0, n_tokens=32)      # (32, 2) seconds
    start, end = best_moment(sims, spans)                              # sims (32,) cosines
    agreement(pred, truth)                                             # {"mean_iou": .., "hit@0.5": ..}

Token spans follow the pipeline exactly: the n sampled frames sit at the centres of n equal bins
of the duration (prvr.video.frame_sampling), so frame j stands for [j D / n, (j + 1) D / n]; frame
token i is the mean of frames edges[i]..edges[i+1]-1, or frame edges[i] alone when the two edges
meet (prvr.store.resample), so it stands for the union of those frames' bins.

The moment rule (`best_moment`): the peak token p (highest similarity, the first on ties), then the
run of consecutive tokens around p whose similarity is at least
    threshold = s_min + ratio * (s_p - s_min)      (s_min: the video's lowest token, ratio 0.5)
i.e. the tokens that keep at least half of the peak's height above the video's floor; the moment
runs from the start of the run's first token to the end of its last. A flat profile (s_p = s_min)
gives the whole video.
"""
from __future__ import annotations

import numpy as np

from prvr.store.resample import resample_edges

RATIO = 0.5  # the moment keeps the tokens within this share of the peak's height above the floor


def token_spans(n_frames: int, duration: float, n_tokens: int) -> np.ndarray:
    """(n_tokens, 2) float64 [start, end] seconds of each frame token of a video whose `n_frames`
    sampled frames cover `duration` seconds in equal bins."""
    edges = resample_edges(n_frames, n_tokens)  # (n + 1,)
    first, last = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)  # frames first..last-1
    bin_len = duration / n_frames
    return np.stack([first * bin_len, last * bin_len], axis=1).astype(np.float64)


def best_moment(sims: np.ndarray, spans: np.ndarray, ratio: float = RATIO) -> tuple[float, float]:
    """(start, end) seconds of the moment around the peak of `sims` (N,), token spans (N, 2); see
    the module docstring for the rule."""
    sims = np.asarray(sims, dtype=np.float64)
    if sims.ndim != 1 or len(sims) != len(spans) or len(sims) == 0:
        raise ValueError(f"need (N,) similarities for (N, 2) spans, got {sims.shape} and {np.shape(spans)}")
    peak = int(np.argmax(sims))
    threshold = sims.min() + ratio * (sims[peak] - sims.min())
    left = right = peak
    while left > 0 and sims[left - 1] >= threshold:
        left -= 1
    while right < len(sims) - 1 and sims[right + 1] >= threshold:
        right += 1
    return float(spans[left:right + 1, 0].min()), float(spans[left:right + 1, 1].max())


def temporal_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(M,) intersection over union of M predicted and M true [start, end] spans (M, 2); two empty
    spans at the same point count as IoU 0."""
    pred, truth = np.asarray(pred, dtype=np.float64).reshape(-1, 2), np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(pred[:, 1], truth[:, 1]) - np.maximum(pred[:, 0], truth[:, 0]), 0, None)
    union = np.maximum(pred[:, 1], truth[:, 1]) - np.minimum(pred[:, 0], truth[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def agreement(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """mean IoU and hit@threshold (share of moments with IoU >= threshold) of predicted moments."""
    iou = temporal_iou(pred, truth)
    if len(iou) == 0:
        raise ValueError("no moments to compare")
    return {"mean_iou": float(iou.mean()), f"hit@{threshold:g}": float((iou >= threshold).mean()), "n": len(iou)}


def centred_windows(durations: np.ndarray, length: float) -> np.ndarray:
    """(M, 2) baseline moments: a window of `length` seconds centred in each video (the whole video
    when it is shorter)."""
    durations = np.asarray(durations, dtype=np.float64)
    half = np.minimum(length, durations) / 2
    return np.stack([durations / 2 - half, durations / 2 + half], axis=1)
