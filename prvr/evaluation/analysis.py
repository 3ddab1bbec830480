"""Semantic-collapse analysis of one split: ground-truth moments -> labels, embeddings -> the
numbers of prvr.evaluation.collapse, for a trained model or for the CLIP input features.

Every video is resampled to N frame tokens (prvr.store.resample.resample_frames); token j of a video
with T decoded frames covers a known fraction of the video (`token_intervals`), so with the query
spans of the annotation file each (query, token) pair is labelled: `inside` (the token's centre lies
in the query's moment) and `overlap` (the token's interval meets the moment). Assumes, as the
decoders do, that the T frames sample the whole duration uniformly.

    moments = split_moments(index, queries_by_caption, n_frames_by_video, n_tokens=32, labels=None)
    record = analyse(model, dataset, moments)   # a trained model; model=None: the CLIP input features

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

from dataclasses import dataclass

import numpy as np
import torch

from prvr.sources.annotations import Query
from prvr.data.dataset import PRVRDataset
from prvr.store.resample import resample_edges
from prvr.store.splits import SplitIndex
from prvr.errors import PrvrError
from prvr.evaluation import collapse
from prvr.evaluation.evaluate import encode_queries, encode_videos


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
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _chunks(n: int):
    return (slice(start, min(start + QUERY_CHUNK, n)) for start in range(0, n, QUERY_CHUNK))


def _localization(queries: np.ndarray, tokens: np.ndarray, query_video: np.ndarray,
                  overlap: np.ndarray) -> tuple[float, float]:
    """queries (Q, H), tokens (V, N, H), overlap (Q, N) -> (hit rate, chance) over all queries."""
    hits = chance = 0.0
    for part in _chunks(len(queries)):
        scores = np.einsum("qh,qnh->qn", _normalise(queries[part]),
                           _normalise(tokens[query_video[part]]))  # (q, N)
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
        tokens = _normalise(frame_tokens[moments.query_video[rows]])  # (q, N, H)
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
def split_embeddings(model, dataset: PRVRDataset, batch_size: int = 256,
                     device: str = "cpu") -> dict[str, np.ndarray]:
    """queries (Q, H), frame_tokens (V, N, H) and, for a model that has them, clip_tokens (V, Nc, H)
    and frame_to_clip (V, N). model None: the untrained reference, the CLIP sentence vectors and the
    resampled CLIP frame features."""
    if model is None:
        return {"queries": teacher_embeddings(dataset), "frame_tokens": dataset.frames.astype(np.float64)}
    model.eval()
    videos = encode_videos(model, dataset, batch_size, device, keys=("frame_tokens",),
                           optional=("clip_tokens", "frame_to_clip"))  # a model without clip tokens: no clip_hit
    emb = {"queries": encode_queries(model, dataset, batch_size, device).double().numpy(),
           "frame_tokens": videos["frame_tokens"].double().numpy()}
    if "clip_tokens" in videos and "frame_to_clip" in videos:
        emb["clip_tokens"] = videos["clip_tokens"].double().numpy()
        emb["frame_to_clip"] = videos["frame_to_clip"].numpy()
    return emb


def analyse(model, dataset: PRVRDataset, moments: SplitMoments, batch_size: int = 256,
            device: str = "cpu") -> dict[str, float]:
    """collapse_record of a trained model (or, model None, of the CLIP input features)."""
    emb = split_embeddings(model, dataset, batch_size, device)
    return collapse_record(emb["queries"], emb["frame_tokens"], teacher_embeddings(dataset), moments,
                           emb.get("clip_tokens"), emb.get("frame_to_clip"))


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
