"""Evaluate a PRVR model on one split: every video of the split is a candidate for every query.

    metrics = evaluate_split(model, dataset, EvalConfig())
    # {"R@1": .., ..., "SumR": .., "queries_with_ties": ..}

Scores follow the released code: w_clip * max-over-clip-tokens cosine + w_frame * max-over-frame
-token cosine for the MSC models, in general the model's `score_branches` (prvr.evaluation.model_scores:
the baselines' own score forms); ranks use the tie rule cfg.ties (config eval.ties; default "expected", the exact mean
over random tie-breaking) of `prvr.evaluation.metrics` for validation during training and test alike.

Memory at benchmark size (TVR test: 2,179 videos, 10,895 queries): videos are read and encoded a
model call at a time (see Speed) and queries cfg.batch_size at a time (a cache-backed dataset reads
only those rows); evaluate_split then ranks a query chunk at a time (prvr.evaluation.ranking: one
(query_chunk, V) block of scores, never a (Q, V, tokens) tensor nor the (Q, V) matrix), the near
ties of every chunk settled together at the end in float64 (ranking.PairScorer: each video read once
for all the queries that need it). What is held whole: the encoded tokens (V x (Nc + Nf) x H
float32, and a unit-length copy while ranking), the encoded queries (Q x H). split_scores still
builds the (Q, V) float64 matrix, for callers that want the scores themselves (the qualitative
figure); its ranks are evaluate_split's.

Speed: on CPU the model sees (and the cache is read for) at most CPU_MODEL_VIDEOS videos per call in
float32, twice that in bfloat16 (activations of half the bytes), whatever cfg.batch_size is, so its
intermediate tensors (the FFN's (B * Nf, 4H) at the paper's shape: 25 MB) stay small enough for the
allocator to reuse them; larger calls page-fault fresh memory in every layer (measured before the
parallel block stopped stacking its layers' outputs, at 1 thread, the paper's model on 2,179 videos
in float32: 28 s of system time at 128 videos per call, 21 s at 64, 8 s at 32; user time 116 s in
each case; bench/bench_scale.py --model-videos). Now, on 2 threads and 512 videos: float32 14.5 s at
32 videos per call, 17 s at 64; bfloat16 9.4 s at 32, 8.8 s at 64. Every video is encoded alone
(nothing mixes videos), so the split only changes how a matrix product is blocked: float32 rounding.
Queries are encoded in order of length (less padding; see encode_queries).

Precision (cfg.precision, config eval.precision): "float32", or "bfloat16": the model runs under
torch.autocast in bfloat16 (CPU or CUDA); its outputs are cast to float32, scored in float32 and
ranked in float64 as in float32 mode. Independently, the scores' first pass may be screened in
bfloat16 (SCREEN, prvr.evaluation.ranking: "auto" does where the CPU multiplies bfloat16 natively):
the counts, hence the metrics, are the float32 screen's whatever the screen.

The collapse diagnostics of the evaluate job are computed on encode_split(..., analysed=True)'s
encodings, those evaluate_split ranks (prvr.evaluation.analysis.evaluate_and_diagnose).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from prvr.config import EvalConfig
from prvr.data.dataset import PRVRDataset, pad_queries
from prvr.evaluation.metrics import check_ties, metrics_from_counts
from prvr.evaluation import model_scores, ranking, scoring, ties
from prvr.models.base import MAX_CLIP_AND_FRAME


CPU_MODEL_VIDEOS = 32  # videos per model call on CPU in float32, twice that in bfloat16 (see the module docstring)
PRECISIONS = ("float32", "bfloat16")
SCREEN = "auto"  # the scores' first pass (prvr.evaluation.ranking): the counts are the same for every screen


def encoding_precision(precision: str, device: str):
    """Context for encoding at `precision`: nothing for float32, bfloat16 autocast on the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"eval.precision: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _videos_per_call(batch_size: int, device: str, precision: str) -> int:
    """Videos read and encoded per model call: batch_size, on CPU at most CPU_MODEL_VIDEOS in float32
    and twice that in bfloat16."""
    if torch.device(device).type != "cpu":
        return batch_size
    return min(batch_size, CPU_MODEL_VIDEOS * (2 if precision == "bfloat16" else 1))


def score_branches(model):
    """The model's ScoreBranch pair (the MSC models' clip and frame max branches by default)."""
    return getattr(model, "score_branches", MAX_CLIP_AND_FRAME)


@torch.no_grad()
def encode_videos(model, dataset: PRVRDataset, batch_size: int, device: str,
                  keys: tuple[str, ...] = ("clip_tokens", "frame_tokens"),
                  optional: tuple[str, ...] = (), precision: str = "float32") -> dict[str, torch.Tensor]:
    """Encode every video of the split in chunks: the model outputs named by `keys`, stacked over
    videos, e.g. clip_tokens (V, Nc, H), frame_tokens (V, Nf, H), frame_to_clip (V, Nf); those named
    by `optional` only where the model has them (e.g. DL-DKD has no clip tokens). Floating outputs
    are float32 whatever `precision` ("float32" or "bfloat16") the model ran at."""
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys + optional}
    with encoding_precision(precision, device):
        step = _videos_per_call(batch_size, device, precision)  # read as encoded: small buffers the allocator reuses
        for start in range(0, len(dataset), step):
            frames = torch.from_numpy(np.array(dataset.frames[start:start + step], dtype=np.float32)).to(device)
            _append_outputs(parts, model.encode_videos(frames), optional)
    return {k: torch.cat(v) for k, v in parts.items() if v}


def _append_outputs(parts: dict[str, list[torch.Tensor]], out: dict, optional: tuple[str, ...]) -> None:
    for key in parts:
        if key in optional and key not in out:
            continue
        value = out[key]
        parts[key].append((value.float() if value.is_floating_point() else value).cpu())


def query_lengths(queries, ids) -> np.ndarray:
    """(Q,) token counts of the captions `ids` of a split's queries (a dict or a cache view)."""
    if hasattr(queries, "lengths"):
        return queries.lengths(ids)
    return np.array([queries[c].shape[0] for c in ids], dtype=np.int64)


@torch.no_grad()
def encode_queries(model, dataset: PRVRDataset, batch_size: int, device: str,
                   keys: tuple[str, ...] | None = None, precision: str = "float32"):
    """Encode every caption of the split in chunks, in `dataset.index.caption_ids` order: the query
    vectors (Q, H), or with `keys` a dict of those encode_queries outputs, each (Q, H), float32
    whatever `precision` the model ran at.

    Captions are batched in order of length (a batch is padded to its longest caption, so mixed
    lengths waste products on padding) and put back in split order; each caption is encoded alone
    (padding is masked), so the order changes only how products are blocked: float32 rounding."""
    ids = dataset.index.caption_ids
    order = np.argsort(query_lengths(dataset.queries, ids), kind="stable")  # (Q,)
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in (keys or ("query",))}
    with encoding_precision(precision, device):
        for start in range(0, len(ids), batch_size):
            feats, mask = pad_queries([dataset.queries[ids[i]] for i in order[start:start + batch_size]])
            out = model.encode_queries(feats.to(device), mask.to(device))
            out = out if isinstance(out, dict) else {"query": out}
            for key in parts:
                parts[key].append(out[key].float().cpu())
    restore = torch.from_numpy(np.argsort(order))  # sorted position of each caption
    stacked = {k: torch.cat(v)[restore] for k, v in parts.items()}
    return stacked if keys else stacked["query"]


def encode_split(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu", analysed: bool = False):
    """(queries, videos): the encodings the evaluation scores, every caption and video of the split at
    cfg.precision (dicts of float32 tensors: the score branches' encode_queries and encode_videos
    outputs). analysed: also those the collapse diagnostics read (prvr.evaluation.analysis): "query",
    "frame_tokens", and "clip_tokens" and "frame_to_clip" where the model has them; asking for more
    outputs changes none of the numbers (the model computes them all)."""
    branches = score_branches(model)
    video_keys, query_keys = model_scores.video_keys(branches), model_scores.query_keys(branches)
    optional: tuple[str, ...] = ()
    if analysed:
        video_keys += ("frame_tokens",) * ("frame_tokens" not in video_keys)
        optional = tuple(k for k in ("clip_tokens", "frame_to_clip") if k not in video_keys)
        query_keys += ("query",) * ("query" not in query_keys)
    was_training = model.training
    model.eval()
    try:
        videos = encode_videos(model, dataset, cfg.batch_size, device, video_keys, optional, cfg.precision)
        queries = encode_queries(model, dataset, cfg.batch_size, device, query_keys, cfg.precision)
    finally:
        model.train(was_training)
    return queries, videos


def relevant_videos(dataset: PRVRDataset) -> np.ndarray:
    """(Q,) index in dataset.index.videos of each caption's video, in caption order."""
    video_index = {v: i for i, v in enumerate(dataset.index.videos)}
    return np.array([video_index[c.split("#", 1)[0]] for c in dataset.index.caption_ids], dtype=np.int64)


def split_scores(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu",
                 query_chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score matrix (Q, V) float64 over the split and each query's relevant video index (Q,).

    Scores are the model's score branches (prvr_scores's for the MSC models), computed query_chunk
    (default scoring.QUERY_CHUNK) queries at a time (model_scores.model_scores_chunked) in float32
    from encodings made at cfg.precision; the candidates within ties.NEAR_BAND of a query's relevant
    video are then recomputed in float64 and those within cfg.tie_tolerance of it set equal to it
    (prvr.evaluation.ties: a tie does not depend on chunk sizes or the CPU's kernels). The evaluation
    itself ranks without this matrix (evaluate_split: prvr.evaluation.ranking), to the same counts."""
    branches = score_branches(model)
    queries, videos = encode_split(model, dataset, cfg, device)
    weights = (cfg.w_clip, cfg.w_frame)
    scores = model_scores.model_scores_chunked(queries, videos, branches, weights,
                                               query_chunk=query_chunk or scoring.QUERY_CHUNK, dtype=torch.float64)
    positive = relevant_videos(dataset)
    scores = scores.numpy()
    ties.settle_near_pairs(scores, positive, ranking.PairScorer(queries, videos, branches, weights), cfg.tie_tolerance)
    return scores, positive


def encoded_rank_counts(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                        positive: np.ndarray, cfg: EvalConfig, screen: str = SCREEN) -> tuple[np.ndarray, np.ndarray]:
    """(higher, tied): metrics.rank_counts of split_scores's matrix from encode_split's encodings,
    without the matrix (prvr.evaluation.ranking, a query chunk at a time)."""
    higher, tied, _ = ranking.split_rank_counts(queries, videos, branches, (cfg.w_clip, cfg.w_frame), positive,
                                                cfg.tie_tolerance, scoring.QUERY_CHUNK, screen)
    return higher, tied


def evaluate_encodings(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                       positive: np.ndarray, cfg: EvalConfig, screen: str = SCREEN) -> dict[str, float | int]:
    """R@K for cfg.ks, SumR and queries_with_ties from encode_split's encodings, under cfg.ties."""
    check_ties(cfg.ties)
    higher, tied = encoded_rank_counts(queries, videos, branches, positive, cfg, screen)
    return metrics_from_counts(higher, tied, ks=tuple(cfg.ks), ties=cfg.ties)


def split_rank_counts(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu",
                      screen: str = SCREEN) -> tuple[np.ndarray, np.ndarray]:
    """(higher, tied) of the split: encode_split, then encoded_rank_counts."""
    queries, videos = encode_split(model, dataset, cfg, device)
    return encoded_rank_counts(queries, videos, score_branches(model), relevant_videos(dataset), cfg, screen)


def evaluate_split(model, dataset: PRVRDataset, cfg: EvalConfig, device: str = "cpu",
                   screen: str = SCREEN) -> dict[str, float | int]:
    """R@K for cfg.ks, SumR and queries_with_ties on one split, under the tie rule cfg.ties."""
    check_ties(cfg.ties)
    higher, tied = split_rank_counts(model, dataset, cfg, device, screen)
    return metrics_from_counts(higher, tied, ks=tuple(cfg.ks), ties=cfg.ties)
