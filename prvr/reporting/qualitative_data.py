"""What the qualitative figure shows (prvr.reporting.qualitative), gathered from trained models: each
model's scores on the test split (the evaluation's split_scores), the relevant video's rank, its top
videos for the chosen queries with their predicted moments (prvr.search.moments.best_moment on the
cosines of the query with the video's frame tokens, frame tokens spanning the sampled frames' time
bins), frame strips decoded from the videos, and each query's annotated moment.

    chosen = qualitative_run({"baseline": Path(".../baseline/seed1/model.pt"), "adaptive": ...}, cfg,
                             annotations, captions, video_feats, text_feats, videos_dir, out_png)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prvr.config import Config
from prvr.data.dataset import PRVRDataset
from prvr.errors import PrvrError
from prvr.evaluation.evaluate import encode_queries, encode_videos, score_branches, split_scores
from prvr.reporting.qualitative import QueryRow, VideoHit, choose_queries, qualitative_figure
from prvr.search.moments import best_moment, token_spans
from prvr.search.searcher import ranking
from prvr.sources.annotations import read_tvr_jsonl
from prvr.store.feature_store import FeatureStore
from prvr.training.model_file import model_from_saved, read_model_file
from prvr.video.decoders.common import VideoDecodeError
from prvr.video.decoding import decode_video
from prvr.video.video_files import video_files

STRIP_FRAMES, STRIP_SIZE = 4, 64


def _model_view(path: Path, captions: Path, video_feats: Path, text_feats: Path):
    """(scores (Q, V), positive (Q,), frame tokens (V, Nf, H), frame-branch queries (Q, H), dataset)."""
    model, cfg = model_from_saved(read_model_file(path), str(path), "cpu")
    dataset = PRVRDataset.for_model(captions, video_feats, text_feats, cfg.model)
    scores, positive = split_scores(model, dataset, cfg.eval)
    frame_branch = next(b for b in score_branches(model) if b.video_key == "frame_tokens")
    frames = encode_videos(model, dataset, cfg.eval.batch_size, "cpu", keys=("frame_tokens",))["frame_tokens"]
    queries = encode_queries(model, dataset, cfg.eval.batch_size, "cpu", keys=(frame_branch.query_key,))
    return scores, positive, frames, queries[frame_branch.query_key], dataset


def qualitative_run(model_paths: dict[str, Path], cfg: Config, annotation_file: Path, captions: Path,
                    video_feats: Path, text_feats: Path, videos_dir: Path, out_png: Path, k: int = 5,
                    n_disagree: int = 3, n_random: int = 2) -> list[dict]:
    """Draw the figure for two or more models (the first two choose the queries); returns the chosen
    queries with why each was chosen and every model's rank of its relevant video."""
    views = {name: _model_view(Path(p), captions, video_feats, text_feats) for name, p in model_paths.items()}
    first, second = list(views)[:2]
    dataset = views[first][4]
    ids, videos = dataset.index.caption_ids, dataset.index.videos
    ranks = {name: 1 + (v[0] > v[0][np.arange(len(v[1])), v[1]][:, None]).sum(1) for name, v in views.items()}
    chosen = choose_queries(ranks[first], ranks[second], ids, n_disagree, n_random, seed=cfg.analysis.tsne_seed)
    truth = {q.caption_id: q for q in read_tvr_jsonl(annotation_file, bad_spans="keep")}
    missing = [ids[q] for q, _ in chosen if ids[q] not in truth]
    if missing:
        raise PrvrError(f"{annotation_file}: caption {missing[0]!r} of {captions} is not annotated there")
    duration = {q.vid: q.duration for q in truth.values()}
    files = video_files(videos_dir, videos)
    with FeatureStore(video_feats) as store:
        n_frames = {v: store[v].shape[0] for v in videos}
    rows, strips = [], {}
    for q, _ in chosen:
        hits = {}
        for name, (scores, _, frames, queries, _) in views.items():
            top = ranking(scores[q], videos)[:k]
            sims = torch.einsum("h,vnh->vn", F.normalize(queries[q], dim=-1), F.normalize(frames[top], dim=-1))
            hits[name] = [VideoHit(videos[v], _strip(files[videos[v]], strips), duration[videos[v]],
                                   best_moment(s.numpy(), token_spans(n_frames[videos[v]], duration[videos[v]],
                                                                      frames.shape[1])))
                          for v, s in zip(top, sims)]
        row = truth[ids[q]]
        rows.append(QueryRow(row.desc, row.vid, (row.start, row.end), hits, {n: int(r[q]) for n, r in ranks.items()}))
    qualitative_figure(rows, out_png, caption(list(views), n_disagree, n_random, k))
    return [{"caption_id": ids[q], "why": why, "ranks": {n: int(r[q]) for n, r in ranks.items()}} for q, why in chosen]


def _strip(path: Path, cache: dict) -> np.ndarray:
    """(T, s, s, 3) thumbnails; PyAV where decord refuses a resize (it fails on some small sizes, e.g.
    64 x 64 to 48: "The size must exactly match")."""
    if path not in cache:
        try:
            cache[path] = decode_video(path, num_frames=STRIP_FRAMES, size=STRIP_SIZE)
        except VideoDecodeError:
            cache[path] = decode_video(path, num_frames=STRIP_FRAMES, size=STRIP_SIZE, backend="pyav")
    return cache[path]


def caption(models: list[str], n_disagree: int, n_random: int, k: int) -> str:
    return (f"Queries: the {n_disagree} test captions whose relevant video {models[0]} and {models[1]} rank most "
            f"differently (|log2 rank ratio|; ties by caption id), then {n_random} drawn at random (fixed seed). "
            f"Per model its top {k} videos (ties by video id); blue: the predicted moment (peak frame token and its "
            f"neighbours above half its height); green frame and bar: the relevant video and its annotated moment. "
            f"Ranks: 1 + videos scored strictly higher.")
