"""Training and evaluation data: caption files + HDF5 feature stores -> padded torch batches.

A split is defined, as in the authors' code, by an MS-SL caption file (`<vid>#enc#<k> <caption>`):
its videos are the ids before '#', its queries the caption ids. Video features come from one HDF5
(`(n_frames, D)` per video id) and caption token features from another (`(L, D)` per caption id).

A training batch holds B videos with all their captions (the authors' batching):

    ds = PRVRDataset("train.caption.txt", "video_feats.h5", "text_feats.h5", frame_tokens=32)
    loader = DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate_videos)

At TVR size, build the dataset's resampled float16 cache once (prvr.data.feature_cache) and read
every split from it: rows are gathered from the mapped file on access, not held in RAM:

    ds = PRVRDataset.from_cache(FeatureCache("results/tvr/cache/ft128_q77"), "train.caption.txt")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr.data.annotations import AnnotationError, read_caption_txt
from prvr.data.feature_store import FeatureCheck, FeatureStore


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

    From the stores (the constructor): features are read into memory once, `frames` a (V, Nf, D)
    array and `queries` a dict of (L, D) arrays, in `dtype` (float32). Each array is checked as read
    (FeatureCheck): an empty, non-2-D, other-dimension or non-finite entry is a FeatureError naming
    the store file and the id. Fine for the demo; at TVR size (6.9 GB of float32 frames for the
    train split alone) use `from_cache`.

    From a feature cache (`from_cache`): `frames` is a CachedRows view and `queries` a CachedQueries
    mapping of the cache's float16 memmaps; an item reads its rows on access (float16: the collate
    casts each batch to float32). The numbers are the store path's rounded to float16 (see
    prvr.data.feature_cache), the indexing the same: len(ds.frames), ds.frames[a:b], ds.queries[c].
    """

    def __init__(self, caption_file, video_store, text_store, frame_tokens: int, dtype=np.float32,
                 max_query_len: int | None = None):
        """max_query_len: keep only the first max_query_len token rows of each caption (the authors'
        `[:max_desc_l]`, 77), so its last kept token is the caption's frozen-CLIP teacher
        (`query_eot`); None keeps all. `truncated_captions` counts the captions that were cut."""
        if max_query_len is not None and max_query_len < 1:
            raise ValueError(f"max_query_len must be >= 1 or None, got {max_query_len}")
        self.index = read_split(caption_file)
        self.max_query_len = max_query_len
        # every array is checked as read, so a bad entry is reported by file and id (FeatureCheck)
        check_video = FeatureCheck(video_store, "video")
        with FeatureStore(video_store) as videos:
            self.frames = np.stack([resample_frames(check_video(v, videos[v]), frame_tokens)
                                    for v in self.index.videos]).astype(dtype)  # (V, Nf, D)
        self.queries = {}  # caption id -> (L, D), L <= max_query_len
        self.truncated_captions = 0
        check_caption = FeatureCheck(text_store, "caption")
        with FeatureStore(text_store) as texts:
            for c in self.index.caption_ids:
                tokens = check_caption(c, texts[c])
                if max_query_len is not None and tokens.shape[0] > max_query_len:
                    tokens = tokens[:max_query_len]
                    self.truncated_captions += 1
                self.queries[c] = tokens.astype(dtype)

    @classmethod
    def for_model(cls, caption_file, video_store, text_store, model_cfg) -> "PRVRDataset":
        """The split as a model of `model_cfg` (config `model`) reads it: resampled to
        frame_tokens, captions cut at max_query_len."""
        return cls(caption_file, video_store, text_store, model_cfg.frame_tokens,
                   max_query_len=model_cfg.max_query_len)

    @classmethod
    def from_cache(cls, cache, caption_file, model_cfg=None) -> "PRVRDataset":
        """The split of `caption_file` read from a feature cache (a FeatureCache or its directory),
        without copying it into RAM. The caption file must be one the cache was built from and, with
        `model_cfg`, the cache's frame_tokens and max_query_len those of the model; otherwise a
        StaleCacheError naming the cache's index file (the stores: FeatureCache.check_inputs)."""
        from prvr.data.cache_views import CachedQueries, CachedRows
        from prvr.data.feature_cache import FeatureCache
        if not isinstance(cache, FeatureCache):
            cache = FeatureCache(cache)
        if model_cfg is not None:
            cache.check_settings(model_cfg.frame_tokens, model_cfg.max_query_len)
        index = read_split(caption_file)
        cache.check_caption_file(caption_file)
        self = cls.__new__(cls)
        self.index = index
        self.max_query_len = cache.max_query_len
        self.cache = cache
        self.frames = CachedRows(cache.frames, cache.video_rows(self.index.videos))  # (V, Nf, D) float16
        caption_ids = self.index.caption_ids
        self.queries = CachedQueries(cache, caption_ids)
        self.truncated_captions = sum(int(r) in cache.truncated for r in cache.caption_rows(caption_ids))
        return self

    def __len__(self) -> int:
        return len(self.index.videos)

    def __getitem__(self, i: int) -> dict:
        vid = self.index.videos[i]
        return {"vid": vid, "frames": self.frames[i], "queries": [self.queries[c] for c in self.index.captions[vid]]}


def pad_queries(queries: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(L_i, D)` token arrays into `(Q, L_max, D)` float32 with a `(Q, L_max)` validity mask."""
    lengths = torch.tensor([q.shape[0] for q in queries])  # (Q,)
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]  # (Q, L_max)
    feats = torch.zeros(*mask.shape, queries[0].shape[1])
    # one copy of every token, in mask order (query by query, position by position)
    feats[mask] = torch.from_numpy(np.concatenate(queries)).float()
    return feats, mask


def collate_videos(items: list[dict]) -> dict:
    """Batch of B videos with all their Q captions.

    Returns frame_feats (B, Nf, D), query_feats (Q, L, D), query_mask (Q, L), query_to_video (Q,),
    query_eot (Q, D): the last token row of each caption, its end-of-text token (the frozen CLIP
    sentence embedding), or for a caption cut to max_query_len the last kept token, as the authors'.
    """
    frames = torch.from_numpy(np.stack([it["frames"] for it in items]).astype(np.float32))
    queries = [q for it in items for q in it["queries"]]
    owner = torch.tensor([b for b, it in enumerate(items) for _ in it["queries"]], dtype=torch.long)
    query_feats, query_mask = pad_queries(queries)
    eot = torch.stack([torch.from_numpy(np.asarray(q[-1], dtype=np.float32)) for q in queries])
    return {"frame_feats": frames, "query_feats": query_feats, "query_mask": query_mask,
            "query_to_video": owner, "query_eot": eot, "vids": [it["vid"] for it in items]}
