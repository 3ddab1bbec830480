"""Frame features resampled to a fixed number of tokens, exactly as the authors' released code does
(the feature cache stores them, datasets and the collapse analysis read them)."""
from __future__ import annotations

import numpy as np


def resample_edges(n_frames: int, n_tokens: int) -> np.ndarray:
    """(n_tokens + 1,) int64 frame indices: token i is built from frames edges[i]..edges[i+1]-1
    (see resample_frames), computed as the authors' `average_to_fixed_length` does.

    edges[i] = min(round(i / n * T), T - 1) with round half to even (torch.round, np.round), the
    arithmetic done in float32 as theirs is (torch.arange(0, n + 1, 1.0) is float32): for n a power of
    two this is the exact round(i T / n), otherwise float32 error can move an exact half, e.g.
    T = 95, n = 10, i = 3: 28.5 exactly but 28.500002 in float32, so 29 (the exact rule gives 28).
    """
    if n_frames < 1 or n_tokens < 1:
        raise ValueError(f"cannot resample {n_frames} frames to {n_tokens} tokens")
    pos = np.arange(n_tokens + 1, dtype=np.float32) / np.float32(n_tokens) * np.float32(n_frames)  # (n+1,)
    return np.minimum(np.round(pos).astype(np.int64), n_frames - 1)


def resample_frames(feats: np.ndarray, n_tokens: int) -> np.ndarray:
    """Resample `(T, D)` frame features to `(n_tokens, D)` exactly as the authors' released code
    (MSC_PRVR, `average_to_fixed_length`) does, since that is how their reported numbers were made.

    With edges = resample_edges(T, n), i.e. min(round(i T / n), T - 1), round half to even:
    token i is the mean of frames edges[i]..edges[i+1]-1 when edges[i] < edges[i+1], else frame
    edges[i] alone. Consequences of their reading:
      T < n: token i is frame min(round(i T / n), T - 1) (nearest frame, halves to even, e.g. T = 37,
             n = 128: token 64 is frame 18 since 18.5 rounds to 18), not floor(i T / n).
      T > n: near-equal contiguous bins, but the last edge is clamped to T - 1, so the last bin stops
             before the last frame: frame T - 1 is dropped (e.g. T = 200, n = 128: the last token is
             frame 198 alone, frame 199 is never used). Only when the last bin starts at T - 1
             (roughly T < 1.5 n, e.g. T = 129, n = 128) is the last token frame T - 1 alone.
      T = n: the identity.
    Averaging is done in float64; the result is float32.
    """
    t = feats.shape[0]
    edges = resample_edges(t, n_tokens)  # (n+1,)
    start, end = edges[:-1], edges[1:]  # (n,)
    # reduceat over the pairs (start, end): at start it sums frames start..end-1 when start < end and
    # gives frame start alone otherwise (end <= T - 1 is always a valid index, thanks to the clamp).
    pairs = np.stack([start, end], axis=1).ravel()  # (2n,)
    sums = np.add.reduceat(feats.astype(np.float64), pairs, axis=0)[::2]  # (n, D)
    return (sums / np.maximum(end - start, 1)[:, None]).astype(np.float32)
