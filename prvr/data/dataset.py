"""Training and evaluation data: caption files + HDF5 feature stores -> padded torch batches.

A split is defined, as in the authors' code, by an MS-SL caption file (`<vid>#enc#<k> <caption>`):
its videos are the ids before '#', its queries the caption ids. Video features come from one HDF5
(`(n_frames, D)` per video id) and caption token features from another (`(L, D)` per caption id).

A training batch holds B videos with all their captions (the authors' batching):

    ds = PRVRDataset("train.caption.txt", "video_feats.h5", "text_feats.h5", frame_tokens=32)
    loader = DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate_videos)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr.data.annotations import AnnotationError, read_caption_txt
from prvr.data.feature_store import FeatureStore


def resample_frames(feats: np.ndarray, n_tokens: int) -> np.ndarray:
    """Resample `(T, D)` frame features to `(n_tokens, D)`.

    T > n: mean of each of n contiguous, near-equal bins (every frame counted once).
    T <= n: nearest-frame repetition (uniform index map), as the authors' code does.
    """
    t = feats.shape[0]
    if t == n_tokens:
        return feats.astype(np.float32, copy=False)
    if t < n_tokens:
        idx = np.floor(np.arange(n_tokens) * t / n_tokens).astype(np.int64)  # (n,)
        return feats[idx].astype(np.float32, copy=False)
    edges = np.round(np.linspace(0, t, n_tokens + 1)).astype(np.int64)  # (n+1,), strictly increasing
    sums = np.add.reduceat(feats.astype(np.float64), edges[:-1], axis=0)  # (n, D)
    return (sums / np.diff(edges)[:, None]).astype(np.float32)


@dataclass
class SplitIndex:
    """Videos of a split in first-seen order, and each video's caption ids and texts."""
    videos: list[str]
    captions: dict[str, list[str]]  # vid -> caption ids
    texts: dict[str, str]  # caption id -> caption

    @property
    def caption_ids(self) -> list[str]:
        return [c for v in self.videos for c in self.captions[v]]


def read_split(caption_file: str | Path) -> SplitIndex:
    """Index a caption file by video; an empty file is an error (a split with no queries)."""
    queries = read_caption_txt(caption_file)
    videos: list[str] = []
    captions: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for caption_id, text in queries:
        vid = caption_id.split("#", 1)[0]
        if vid not in captions:
            videos.append(vid)
            captions[vid] = []
        captions[vid].append(caption_id)
        texts[caption_id] = text
    if not videos:
        raise AnnotationError(f"{caption_file}: no captions in file")
    return SplitIndex(videos, captions, texts)


class PRVRDataset(torch.utils.data.Dataset):
    """One item per video: its resampled frame features and the token features of its captions.

    Features are read into memory once (the demo and the real benchmarks' resampled features fit:
    TVR is 17k videos x 128 x 768 float16 = 3.4 GB; `dtype` lets a user halve it).
    """

    def __init__(self, caption_file, video_store, text_store, frame_tokens: int, dtype=np.float32):
        self.index = read_split(caption_file)
        with FeatureStore(video_store) as videos:
            self.frames = np.stack([resample_frames(videos[v], frame_tokens) for v in self.index.videos]).astype(dtype)  # (V, Nf, D)
        with FeatureStore(text_store) as texts:
            self.queries = {c: texts[c].astype(dtype) for c in self.index.caption_ids}  # id -> (L, D)

    def __len__(self) -> int:
        return len(self.index.videos)

    def __getitem__(self, i: int) -> dict:
        vid = self.index.videos[i]
        return {"vid": vid, "frames": self.frames[i], "queries": [self.queries[c] for c in self.index.captions[vid]]}


def pad_queries(queries: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(L_i, D)` token arrays into `(Q, L_max, D)` with a `(Q, L_max)` validity mask."""
    lengths = [q.shape[0] for q in queries]
    dim = queries[0].shape[1]
    feats = torch.zeros(len(queries), max(lengths), dim)
    mask = torch.zeros(len(queries), max(lengths), dtype=torch.bool)
    for i, q in enumerate(queries):
        feats[i, : q.shape[0]] = torch.from_numpy(np.asarray(q, dtype=np.float32))
        mask[i, : q.shape[0]] = True
    return feats, mask


def collate_videos(items: list[dict]) -> dict:
    """Batch of B videos with all their Q captions.

    Returns frame_feats (B, Nf, D), query_feats (Q, L, D), query_mask (Q, L), query_to_video (Q,),
    query_eot (Q, D): the end-of-text token of each caption (the frozen CLIP sentence embedding).
    """
    frames = torch.from_numpy(np.stack([it["frames"] for it in items]).astype(np.float32))
    queries = [q for it in items for q in it["queries"]]
    owner = torch.tensor([b for b, it in enumerate(items) for _ in it["queries"]], dtype=torch.long)
    query_feats, query_mask = pad_queries(queries)
    eot = torch.stack([torch.from_numpy(np.asarray(q[-1], dtype=np.float32)) for q in queries])
    return {"frame_feats": frames, "query_feats": query_feats, "query_mask": query_mask,
            "query_to_video": owner, "query_eot": eot, "vids": [it["vid"] for it in items]}
