"""Training and evaluation data: caption files + HDF5 feature stores -> padded torch batches.

A split is defined, as in the authors' code, by an MS-SL caption file (`<vid>#enc#<k> <caption>`):
its videos are the ids before '#', its queries the caption ids. Video features come from one HDF5
(`(n_frames, D)` per video id) and caption token features from another (`(L, D)` per caption id).

A training batch holds B videos with all their captions (the authors' batching):

    ds = PRVRDataset("train.caption.txt", "video_feats.h5", "text_feats.h5", frame_tokens=32)
    loader = DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate_videos)

At TVR size, build the dataset's resampled float16 cache once (prvr.store.feature_cache) and read
every split from it: rows are gathered from the mapped file on access, not held in RAM:

    ds = PRVRDataset.from_cache(FeatureCache("results/tvr/cache/ft128_q77/train"), "train.caption.txt")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr.errors import AnnotationError
from prvr.store.resample import resample_frames
from prvr.store.splits import SplitIndex, read_split
from prvr.store.feature_store import FeatureCheck, FeatureStore


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
    prvr.store.feature_cache), the indexing the same: len(ds.frames), ds.frames[a:b], ds.queries[c].
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
        from prvr.store.cache_views import CachedQueries, CachedRows
        from prvr.store.feature_cache import FeatureCache
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

    teacher = None  # a prvr.data.teacher.TeacherFeatures (DL-DKD's own teacher files) when set

    def __getitem__(self, i: int) -> dict:
        vid = self.index.videos[i]
        item = {"vid": vid, "frames": self.frames[i], "queries": [self.queries[c] for c in self.index.captions[vid]]}
        if self.teacher is not None:
            item["teacher_frames"] = self.teacher.frames(vid)  # (Nf, Dt)
            item["teacher_sentences"] = [self.teacher.sentence(c) for c in self.index.captions[vid]]
        return item


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
    sentence embedding), or for a caption cut to max_query_len the last kept token, as the authors';
    with a teacher (PRVRDataset.teacher) also teacher_frames (B, Nf, Dt) and teacher_eot (Q, Dt).
    """
    frames = torch.from_numpy(np.stack([it["frames"] for it in items]).astype(np.float32))
    queries = [q for it in items for q in it["queries"]]
    owner = torch.tensor([b for b, it in enumerate(items) for _ in it["queries"]], dtype=torch.long)
    query_feats, query_mask = pad_queries(queries)
    eot = torch.stack([torch.from_numpy(np.asarray(q[-1], dtype=np.float32)) for q in queries])
    batch = {"frame_feats": frames, "query_feats": query_feats, "query_mask": query_mask,
             "query_to_video": owner, "query_eot": eot, "vids": [it["vid"] for it in items]}
    if "teacher_frames" in items[0]:  # DL-DKD's own teacher files: (B, Nf, Dt) and (Q, Dt), query order
        batch["teacher_frames"] = torch.from_numpy(np.stack([it["teacher_frames"] for it in items]))
        batch["teacher_eot"] = torch.from_numpy(np.stack([s for it in items for s in it["teacher_sentences"]]))
    return batch
