"""Evaluate a PRVR model on one split: every video of the split is a candidate for every query.

    metrics = evaluate_split(model, dataset, EvalConfig())
    # {"R@1": .., ..., "SumR": .., "queries_with_ties": ..}

Scores follow the released code: w_clip * max-over-clip-tokens cosine + w_frame * max-over-frame
-token cosine for the MSC models, in general the model's `score_branches` (prvr.evaluation.model_scores:
the baselines' own score forms); ranks use the tie rule cfg.ties (config eval.ties; default "expected", the exact mean
over random tie-breaking) of `prvr.evaluation.metrics` for validation during training and test alike.

Memory at benchmark size (TVR test: 2,179 videos, 10,895 queries): videos and queries are encoded
cfg.batch_size at a time (a cache-backed dataset reads only that batch's rows), the (Q, V) scores are
computed query_chunk queries at a time in cache-sized blocks (prvr_scores_chunked: never a
(Q, V, tokens) tensor) and ranked in row chunks (metrics.rank_counts). What is held whole: the
encoded tokens (V x (Nc + Nf) x H float32), the encoded queries (Q x H) and the (Q, V) float64 scores.
"""
from __future__ import annotations

import numpy as np
import torch

from prvr.config import EvalConfig
from prvr.data.dataset import PRVRDataset, pad_queries
from prvr.evaluation.metrics import retrieval_metrics
from prvr.evaluation import model_scores, scoring
from prvr.models.base import MAX_CLIP_AND_FRAME


def score_branches(model):
    """The model's ScoreBranch pair (the MSC models' clip and frame max branches by default)."""
    return getattr(model, "score_branches", MAX_CLIP_AND_FRAME)


@torch.no_grad()
def encode_videos(model, dataset: PRVRDataset, batch_size: int, device: str,
                  keys: tuple[str, ...] = ("clip_tokens", "frame_tokens"),
                  optional: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Encode every video of the split in chunks: the model outputs named by `keys`, stacked over
    videos, e.g. clip_tokens (V, Nc, H), frame_tokens (V, Nf, H), frame_to_clip (V, Nf); those named
    by `optional` only where the model has them (e.g. DL-DKD has no clip tokens)."""
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys + optional}
    for start in range(0, len(dataset), batch_size):
        frames = torch.from_numpy(np.array(dataset.frames[start:start + batch_size], dtype=np.float32)).to(device)
        out = model.encode_videos(frames)
        for key in parts:
            if key in optional and key not in out:
                continue
            value = out[key]
            parts[key].append((value.float() if value.is_floating_point() else value).cpu())
    return {k: torch.cat(v) for k, v in parts.items() if v}


@torch.no_grad()
def encode_queries(model, dataset: PRVRDataset, batch_size: int, device: str,
                   keys: tuple[str, ...] | None = None):
    """Encode every caption of the split in chunks, in `dataset.index.caption_ids` order: the query
    vectors (Q, H), or with `keys` a dict of those encode_queries outputs, each (Q, H)."""
    ids = dataset.index.caption_ids
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in (keys or ("query",))}
    for start in range(0, len(ids), batch_size):
        feats, mask = pad_queries([dataset.queries[c] for c in ids[start:start + batch_size]])
        out = model.encode_queries(feats.to(device), mask.to(device))
        out = out if isinstance(out, dict) else {"query": out}
        for key in parts:
            parts[key].append(out[key].float().cpu())
    stacked = {k: torch.cat(v) for k, v in parts.items()}
    return stacked if keys else stacked["query"]


def split_scores(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu",
                 query_chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score matrix (Q, V) float64 over the split and each query's relevant video index (Q,).

    Scores are the model's score branches (prvr_scores's for the MSC models), computed query_chunk
    (default scoring.QUERY_CHUNK) queries at a time (model_scores.model_scores_chunked)."""
    branches = score_branches(model)
    was_training = model.training
    model.eval()
    try:
        videos = encode_videos(model, dataset, cfg.batch_size, device, model_scores.video_keys(branches))
        queries = encode_queries(model, dataset, cfg.batch_size, device, model_scores.query_keys(branches))
    finally:
        model.train(was_training)
    scores = model_scores.model_scores_chunked(queries, videos, branches, (cfg.w_clip, cfg.w_frame),
                                               query_chunk=query_chunk or scoring.QUERY_CHUNK, dtype=torch.float64)
    video_index = {v: i for i, v in enumerate(dataset.index.videos)}
    positive = np.array([video_index[c.split("#", 1)[0]] for c in dataset.index.caption_ids], dtype=np.int64)
    return scores.numpy(), positive


def evaluate_split(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu") -> dict[str, float | int]:
    """R@K for cfg.ks, SumR and queries_with_ties on one split, under the tie rule cfg.ties."""
    scores, positive = split_scores(model, dataset, cfg, device)
    return retrieval_metrics(scores, positive, ks=tuple(cfg.ks), ties=cfg.ties)
