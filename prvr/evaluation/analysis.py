"""Semantic-collapse analysis of one split: ground-truth moments -> labels, embeddings -> the
numbers of prvr.evaluation.collapse, for a trained model or for the CLIP input features.

Every video is resampled to N frame tokens (prvr.store.resample.resample_frames); token j of a video
with T decoded frames covers a known fraction of the video (`token_intervals`), so with the query
spans of the annotation file each (query, token) pair is labelled: `inside` (the token's centre lies
in the query's moment) and `overlap` (the token's interval meets the moment). Assumes, as the
decoders do, that the T frames sample the whole duration uniformly.

    moments = split_moments(index, queries_by_caption, n_frames_by_video, n_tokens=32, labels=None)
    record = analyse(model, dataset, moments)   # a trained model; model=None: the CLIP input features
    metrics, record = evaluate_and_diagnose(model, dataset, cfg.eval, moments)  # one encoding for both

What the diagnostics of a trained run (its collapse.json) are defined on: the encodings its
metrics.json ranks. The evaluate job encodes the test split once (evaluate_and_diagnose): the split
as the evaluation reads it (the float16 feature cache, resampled, where data.feature_cache is on;
the feature stores otherwise), encoded at eval.precision (bfloat16 autocast or float32, the outputs
float32 either way); every diagnostic is then computed in float64, each chunk of the float32
encodings cast where it is used (the same numbers as a float64 copy of the whole). The standalone
path (stages.collapse_run: `prvr collapse`, or analysis.split other than the evaluated split)
encodes the stores at eval.precision (analyse). In float32 from the same features the two are equal
to the bit; bfloat16 and the float16 cache move them by little (tests/test_shared_diagnostics.py:
at most 0.00042 and 0.00079 on a small trained model, no hit rate changed).

Keys of the record (each a float; the "same <label>" ones only with hidden event labels, i.e. on the
demo, whose labels are kind = shape/motion, and shape, motion, colour, scene separately):
    frame_contrast, frame_within, frame_between   moment_contrast of frame tokens (0 = collapsed)
    frame_hit, clip_hit                           localization: the query's best frame / clip token
                                                  of its own video meets its moment
    frame_hit_chance, clip_hit_chance             the same for a token drawn at random
    text_sibling_pct        relation_percentile of the queries of the same video with disjoint
                            moments (1 = other events' captions are the nearest: text collapse)
    text_teacher_corr       Spearman correlation with the frozen CLIP text similarities
    text_same_<label>_pct   captions of other videos' events with the same label value, e.g.
                            text_same_kind_pct (0.5 = as far as a random caption; lower = pushed apart)
    video_same_<label>_pct  the same for event embeddings (mean of the inside frame tokens)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prvr.sources.annotations import Query, read_tvr_jsonl
from prvr.store.feature_store import FeatureStore
from prvr.data.dataset import PRVRDataset
from prvr.store.resample import resample_edges
from prvr.store.splits import SplitIndex
from prvr.errors import PrvrError
from prvr.evaluation import collapse
from prvr.evaluation.evaluate import (encode_queries, encode_split, encode_videos, evaluate_encodings,
                                      relevant_videos, score_branches)


QUERY_CHUNK = 512  # queries whose (N, H) video tokens are gathered at once: bounded memory at TVR size


class AnalysisError(PrvrError, ValueError):
    """The analysis inputs do not fit together; the message names what is missing."""


@dataclass
class SplitMoments:
    """Labels of one split, queries in `index.caption_ids` order (Q), videos in index order (V)."""
    query_video: np.ndarray        # (Q,) int video index of each query
    inside: np.ndarray             # (Q, N) bool token centre inside the query's moment
    overlap: np.ndarray            # (Q, N) bool token interval meets the moment
    bounds: np.ndarray             # (Q, 2) moment as fractions of its video
    token_bounds: np.ndarray       # (V, N, 2) each token's interval, fractions of its video
    sibling: np.ndarray            # (Q, Q) bool same video, disjoint moments
    same_label: dict[str, np.ndarray]  # label name -> (Q, Q) bool same value, other video


def token_intervals(n_frames: int, n_tokens: int) -> np.ndarray:
    """(n_tokens, 2) [start, end) of each resampled token as fractions of the video.

    Mirrors resample_frames (the authors' rule, edges from resample_edges): token j averages frames
    edges[j]..edges[j+1]-1 when edges[j] < edges[j+1], else it is frame edges[j] alone, so its
    interval is [edges[j], max(edges[j+1], edges[j] + 1)) / T. T > n: frame T - 1 is usually in no
    token (the last edge is clamped to T - 1), so the last interval ends at (T - 1) / T, not 1.
    """
    if n_frames < 1 or n_tokens < 1:
        raise AnalysisError(f"cannot place {n_tokens} tokens on {n_frames} frames")
    edges = resample_edges(n_frames, n_tokens)  # (n+1,)
    start = edges[:-1]  # (n,)
    end = np.maximum(edges[1:], start + 1)
    return np.stack([start, end], axis=1) / n_frames  # (n, 2)


EVENT_LABELS = ("kind", "shape", "motion", "colour", "scene")  # the demo's hidden labels analysed


def event_labels(queries, labels_file: Path) -> dict[str, dict[str, str]]:
    """caption id -> {label: value} for EVENT_LABELS of the given annotation rows (Query), from the demo
    corpus's hidden event labels (matched by desc_id)."""
    try:
        by_desc = {}
        for line in Path(labels_file).read_text().splitlines():
            row = json.loads(line)
            by_desc[row["desc_id"]] = {name: str(row[name]) for name in EVENT_LABELS}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PrvrError(f"{labels_file}: not an event label file ({type(err).__name__}: {err})") from None
    return {q.caption_id: by_desc[q.desc_id] for q in queries if q.desc_id in by_desc}


def moments_from_files(index: SplitIndex, annotation_file: Path, video_feats: Path, n_tokens: int,
                       labels_file: Path | None = None) -> SplitMoments:
    """split_moments of a split from its annotation file (TVR layout), each video's frame count in
    the feature store video_feats, and the demo's event labels where labels_file is given."""
    with FeatureStore(video_feats) as store:
        n_frames = {v: store.shape(v)[0] for v in index.videos}
    rows = read_tvr_jsonl(annotation_file)
    labels = event_labels(rows, labels_file) if labels_file is not None else None
    return split_moments(index, {q.caption_id: q for q in rows}, n_frames, n_tokens, labels)


def _moment_bounds(query: Query) -> tuple[float, float]:
    if not query.duration or query.duration <= 0:
        raise AnalysisError(f"query {query.caption_id}: collapse analysis needs the video duration")
    return query.start / query.duration, query.end / query.duration


def split_moments(index: SplitIndex, queries: dict[str, Query], n_frames: dict[str, int],
                  n_tokens: int, labels: dict[str, dict[str, str]] | None = None) -> SplitMoments:
    """Label every (query, token) pair of the split; labels (optional): caption id -> {label name:
    value}, e.g. the demo's {"kind": "circle/shake", "colour": "white", ...}."""
    ids = index.caption_ids
    missing = [c for c in ids if c not in queries]
    if missing:
        raise AnalysisError(f"caption {missing[0]} (and {len(missing) - 1} more) not in the annotations")
    video_of = {v: i for i, v in enumerate(index.videos)}
    query_video = np.array([video_of[c.split("#", 1)[0]] for c in ids], dtype=np.int64)  # (Q,)
    token_bounds = np.stack([token_intervals(n_frames[v], n_tokens) for v in index.videos])  # (V, N, 2)
    bounds = np.array([_moment_bounds(queries[c]) for c in ids], dtype=np.float64)  # (Q, 2)
    tokens = token_bounds[query_video]  # (Q, N, 2)
    centre = tokens.mean(axis=2)  # (Q, N)
    start, end = bounds[:, :1], bounds[:, 1:]  # (Q, 1)
    inside = (centre >= start) & (centre < end)
    overlap = (tokens[:, :, 0] < end) & (tokens[:, :, 1] > start)
    same_video = query_video[:, None] == query_video[None, :]  # (Q, Q)
    disjoint = (bounds[:, None, 1] <= bounds[None, :, 0]) | (bounds[None, :, 1] <= bounds[:, None, 0])
    sibling = same_video & disjoint
    same_label = {}
    if labels is not None:
        unknown = [c for c in ids if c not in labels]
        if unknown:
            raise AnalysisError(f"caption {unknown[0]} has no entry in the event labels")
        for name in labels[ids[0]]:
            values = np.array([labels[c].get(name, "") for c in ids])
            same_label[name] = (values[:, None] == values[None, :]) & ~same_video
    return SplitMoments(query_video, inside, overlap, bounds, token_bounds, sibling, same_label)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (float32 input is cast first: the same numbers)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _chunks(n: int):
    return (slice(start, min(start + QUERY_CHUNK, n)) for start in range(0, n, QUERY_CHUNK))


def _unit_tokens_of(tokens: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """_normalise(tokens[videos]) (q, N, H) float64, each distinct video normalised once (a video has
    several queries): the same numbers, a row's norm not depending on the other rows."""
    distinct, position = np.unique(videos, return_inverse=True)
    return _normalise(tokens[distinct])[position]


def _localization(queries: np.ndarray, tokens: np.ndarray, query_video: np.ndarray,
                  overlap: np.ndarray) -> tuple[float, float]:
    """queries (Q, H), tokens (V, N, H), overlap (Q, N) -> (hit rate, chance) over all queries."""
    hits = chance = 0.0
    for part in _chunks(len(queries)):
        scores = np.einsum("qh,qnh->qn", _normalise(queries[part]),
                           _unit_tokens_of(tokens, query_video[part]))  # (q, N)
        out = collapse.localization(scores, overlap[part])
        hits += out["hit_rate"] * len(scores)
        chance += out["chance"] * len(scores)
    return hits / len(queries), chance / len(queries)


def _moment_contrast(frame_tokens: np.ndarray, moments: SplitMoments) -> dict[str, float]:
    """collapse.moment_contrast over query chunks, combined with each chunk's query count."""
    sums = {"within": 0.0, "between": 0.0, "contrast": 0.0}
    used = 0.0
    for part in _chunks(len(moments.query_video)):
        out = collapse.moment_contrast(frame_tokens[moments.query_video[part]], moments.inside[part])
        if out["n_queries"]:
            used += out["n_queries"]
            for key in sums:
                sums[key] += out[key] * out["n_queries"]
    return {key: value / used if used else float("nan") for key, value in sums.items()}


def clip_overlap(moments: SplitMoments, frame_to_clip: np.ndarray) -> np.ndarray:
    """(Q, Nc) bool: clip token c of the query's video holds a frame token meeting the moment."""
    owner = frame_to_clip[moments.query_video]  # (Q, N)
    n_clips = int(frame_to_clip.max()) + 1
    member = owner[:, :, None] == np.arange(n_clips)[None, None, :]  # (Q, N, Nc)
    return (member & moments.overlap[:, :, None]).any(axis=1)


def event_embeddings(frame_tokens: np.ndarray, moments: SplitMoments):
    """Mean of each query's inside frame tokens (normalised first): (Q', H) and the kept rows."""
    keep = np.flatnonzero(moments.inside.any(axis=1))  # (Q',)
    events = []
    for part in _chunks(len(keep)):
        rows = keep[part]
        tokens = _unit_tokens_of(frame_tokens, moments.query_video[rows])  # (q, N, H)
        weights = moments.inside[rows][:, :, None]  # (q, N, 1)
        events.append((tokens * weights).sum(axis=1) / weights.sum(axis=1))
    return np.concatenate(events), keep


def collapse_record(queries: np.ndarray, frame_tokens: np.ndarray, teacher: np.ndarray,
                    moments: SplitMoments, clip_tokens: np.ndarray | None = None,
                    frame_to_clip: np.ndarray | None = None) -> dict[str, float]:
    """The module docstring's keys from queries (Q, H), frame tokens (V, N, H), teacher (Q, D)."""
    contrast = _moment_contrast(frame_tokens, moments)
    record = {"frame_contrast": contrast["contrast"], "frame_within": contrast["within"],
              "frame_between": contrast["between"]}
    record["frame_hit"], record["frame_hit_chance"] = _localization(
        queries, frame_tokens, moments.query_video, moments.overlap)
    if clip_tokens is not None and frame_to_clip is not None:
        record["clip_hit"], record["clip_hit_chance"] = _localization(
            queries, clip_tokens, moments.query_video, clip_overlap(moments, frame_to_clip))
    sim = collapse.cosine_matrix(queries, queries)  # (Q, Q)
    record["text_sibling_pct"] = collapse.relation_percentile(sim, moments.sibling)["percentile"]
    record["text_teacher_corr"] = collapse.structure_correlation(queries, teacher)
    if moments.same_label:
        events, keep = event_embeddings(frame_tokens, moments)
        event_sim = collapse.cosine_matrix(events, events)  # (Q', Q')
    for name, related in moments.same_label.items():
        record[f"text_same_{name}_pct"] = collapse.relation_percentile(sim, related)["percentile"]
        record[f"video_same_{name}_pct"] = collapse.relation_percentile(
            event_sim, related[np.ix_(keep, keep)])["percentile"]
    return {k: float(v) for k, v in record.items()}


def teacher_embeddings(dataset: PRVRDataset) -> np.ndarray:
    """(Q, D) the frozen CLIP sentence embedding (end-of-text token) of every caption."""
    return np.stack([dataset.queries[c][-1] for c in dataset.index.caption_ids]).astype(np.float64)


@torch.no_grad()
def model_encodings(model, dataset: PRVRDataset, batch_size: int = 256, device: str = "cpu",
                    precision: str = "float32") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(queries, videos): the model's "query" (Q, H), "frame_tokens" (V, N, H) and, where it has them,
    "clip_tokens" (V, Nc, H) and "frame_to_clip" (V, N), encoded at `precision` (float32 outputs)
    as the evaluation encodes them (evaluate.encode_split with analysed=True gives the same numbers)."""
    model.eval()
    videos = encode_videos(model, dataset, batch_size, device, keys=("frame_tokens",),
                           optional=("clip_tokens", "frame_to_clip"), precision=precision)
    return {"query": encode_queries(model, dataset, batch_size, device, precision=precision)}, videos


def _embedding_arrays(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The encodings as numpy arrays (views, no copies), clip_tokens and frame_to_clip only together."""
    emb = {"queries": queries["query"].numpy(), "frame_tokens": videos["frame_tokens"].numpy()}
    if "clip_tokens" in videos and "frame_to_clip" in videos:
        emb["clip_tokens"], emb["frame_to_clip"] = videos["clip_tokens"].numpy(), videos["frame_to_clip"].numpy()
    return emb


@torch.no_grad()
def split_embeddings(model, dataset: PRVRDataset, batch_size: int = 256,
                     device: str = "cpu", precision: str = "float32") -> dict[str, np.ndarray]:
    """queries (Q, H), frame_tokens (V, N, H) and, for a model that has them, clip_tokens (V, Nc, H)
    and frame_to_clip (V, N), float64. model None: the untrained reference, the CLIP sentence vectors
    and the resampled CLIP frame features."""
    if model is None:
        return {"queries": teacher_embeddings(dataset), "frame_tokens": dataset.frames.astype(np.float64)}
    emb = _embedding_arrays(*model_encodings(model, dataset, batch_size, device, precision))
    return {k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v for k, v in emb.items()}


def encoded_record(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], dataset: PRVRDataset,
                   moments: SplitMoments) -> dict[str, float]:
    """collapse_record of encodings as model_encodings or evaluate.encode_split(analysed=True) give
    them: float32 tensors read in place, each chunk cast to float64 where it is used (the same numbers
    as a float64 copy of the whole, without the copy: 1.1 GB at the TVR test size)."""
    emb = _embedding_arrays(queries, videos)
    return collapse_record(emb["queries"], emb["frame_tokens"], teacher_embeddings(dataset), moments,
                           emb.get("clip_tokens"), emb.get("frame_to_clip"))


def analyse(model, dataset: PRVRDataset, moments: SplitMoments, batch_size: int = 256,
            device: str = "cpu", precision: str = "float32") -> dict[str, float]:
    """collapse_record of a trained model encoded at `precision` (or, model None, of the CLIP input
    features)."""
    if model is None:
        emb = split_embeddings(None, dataset)
        return collapse_record(emb["queries"], emb["frame_tokens"], teacher_embeddings(dataset), moments)
    return encoded_record(*model_encodings(model, dataset, batch_size, device, precision), dataset, moments)


def evaluate_and_diagnose(model, dataset: PRVRDataset, cfg, moments: SplitMoments, device: str = "cpu"):
    """(metrics, diagnostics) from one encoding of the split: evaluate.evaluate_split's metrics under
    cfg (an EvalConfig) and encoded_record's diagnostics of the very encodings ranked."""
    queries, videos = encode_split(model, dataset, cfg, device, analysed=True)
    metrics = evaluate_encodings(queries, videos, score_branches(model), relevant_videos(dataset), cfg)
    try:
        return metrics, encoded_record(queries, videos, dataset, moments)
    except ValueError as err:  # e.g. a zero or non-finite embedding: an AnalysisError (one line) for the stage
        raise AnalysisError(str(err)) from None


def figure_points(emb: dict[str, np.ndarray], moments: SplitMoments, videos: list[int]) -> dict:
    """The t-SNE figure's points for the chosen video indices: frame tokens labelled by the event
    (the video's k-th query) whose moment holds the token's centre (-1: none), queries by k."""
    frames, frame_video, frame_event, queries, query_video, query_event = [], [], [], [], [], []
    for slot, v in enumerate(videos):
        rows = np.flatnonzero(moments.query_video == v)  # the video's queries, in order
        inside = moments.inside[rows]  # (k, N)
        event = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)  # (N,) first holding query
        frames.append(emb["frame_tokens"][v])
        frame_video.append(np.full(len(event), slot))
        frame_event.append(event)
        queries.append(emb["queries"][rows])
        query_video.append(np.full(len(rows), slot))
        query_event.append(np.arange(len(rows)))
    return {"frame_tokens": np.concatenate(frames), "frame_video": np.concatenate(frame_video),
            "frame_event": np.concatenate(frame_event), "queries": np.concatenate(queries),
            "query_video": np.concatenate(query_video), "query_event": np.concatenate(query_event)}
