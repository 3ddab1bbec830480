"""The pipeline's stages as plain functions of (config, paths): what the CLI and the Snakemake
scripts both call, so every stage runs without Snakemake too (`prvr --help`).

Stage order: corpus -> captions -> pretrain_clip -> video_shard features -> merge -> text features
-> train -> evaluate -> ablation table.
"""
from __future__ import annotations

import math
from pathlib import Path

from prvr.config import Config, merge
from prvr.errors import PrvrError
from prvr.io import write_json


def shard_video_ids(annotation_files: list[Path], shard: int, shard_size: int) -> list[str]:
    """Sorted unique video ids over all splits' annotation files, cut into shards of shard_size."""
    from prvr.data.annotations import read_tvr_jsonl
    vids = sorted({q.vid for path in annotation_files for q in read_tvr_jsonl(path)})
    n_shards = math.ceil(len(vids) / shard_size)
    if not 0 <= shard < n_shards:
        raise PrvrError(f"shard {shard} out of range: {len(vids)} videos make {n_shards} shards of {shard_size}")
    return vids[shard * shard_size:(shard + 1) * shard_size]


def write_captions(annotation_file: Path, out_file: Path) -> int:
    """TVR-layout jsonl -> MS-SL caption file; returns the number of queries."""
    from prvr.data.annotations import read_tvr_jsonl, write_caption_txt
    queries = read_tvr_jsonl(annotation_file)
    write_caption_txt(queries, out_file)
    return len(queries)


def _encoder(cfg: Config, weights: Path | None):
    from prvr.features.clip import load_clip
    pretrained = str(weights) if weights is not None else cfg.clip.pretrained
    return load_clip(cfg.clip.model, pretrained, device=cfg.clip.device, batch_size=cfg.clip.batch_size)


def extract_video_shard(cfg: Config, videos_dir: Path, vids: list[str], weights: Path | None, out: Path) -> None:
    """Decode and encode one shard of videos into an HDF5 shard."""
    from prvr.features.extract import extract_video_features
    paths = {}
    for vid in vids:
        matches = sorted(Path(videos_dir).glob(f"{vid}.*"))
        if not matches:
            raise PrvrError(f"{videos_dir}: no video file for id {vid!r}")
        paths[vid] = matches[0]
    extract_video_features(paths, _encoder(cfg, weights), cfg.frames, out)


def extract_text(cfg: Config, caption_files: list[Path], weights: Path | None, out: Path) -> None:
    """Token features of every caption of every split into one HDF5."""
    from prvr.data.annotations import read_caption_txt
    from prvr.features.extract import extract_text_features
    captions = {cid: text for path in caption_files for cid, text in read_caption_txt(path)}
    extract_text_features(captions, _encoder(cfg, weights), out)


def ablation_config(cfg: Config, ablation_file: Path) -> Config:
    """The base config with one ablation file's overrides applied (its keys: model, loss, train...)."""
    from prvr.config import load_yaml
    overrides = load_yaml(ablation_file)
    overrides.pop("description", None)
    return merge(cfg, overrides, str(ablation_file))


def train_run(cfg: Config, seed: int, data, out_dir: Path, inputs: dict) -> dict:
    """Train one (configuration, seed) and write provenance.json beside model.pt."""
    from prvr.provenance import code_version, write_provenance
    from prvr.training.trainer import train
    code = code_version()  # the code this run starts with
    summary = train(cfg, seed, data, out_dir)
    write_provenance(Path(out_dir) / "provenance.json", cfg, seed, inputs, {"training": summary}, code)
    return summary


def evaluate_run(model_path: Path, captions: Path, video_feats: Path, text_feats: Path, out: Path,
                 split: str = "test", inputs: dict | None = None) -> dict:
    """Evaluate model.pt on a split; metrics JSON carries its own provenance block."""
    from prvr.data.dataset import PRVRDataset
    from prvr.evaluation.evaluate import evaluate_split
    from prvr.provenance import provenance
    import torch
    from prvr.training.trainer import model_from_saved
    saved = torch.load(model_path, map_location="cpu", weights_only=False)
    model, cfg = model_from_saved(saved, str(model_path))
    dataset = PRVRDataset(captions, video_feats, text_feats, cfg.model.frame_tokens)
    metrics = evaluate_split(model, dataset, cfg.eval, cfg.train.device)
    seed = int(saved["seed"])
    record = {"split": split, "n_queries": len(dataset.index.caption_ids), "n_videos": len(dataset),
              "metrics": metrics, "tie_rule": "optimistic: rank = 1 + #candidates scored strictly higher",
              "provenance": provenance(cfg, seed, {"model": model_path, "captions": captions,
                                                   "video_feats": video_feats, "text_feats": text_feats,
                                                   **(inputs or {})})}
    write_json(out, record)
    return record

