"""MS-SL (HuiGuanLab/ms-sl) checkpoints onto prvr's `ms_sl` model.

Their method/train.py writes model.ckpt = {"model": state_dict, "model_cfg": EasyDict, "epoch"}
(DL-DKD writes the same layout). Settings: sizes from the weight shapes, frame_tokens from the frame
position table (max_ctx_l), clip_tokens from model_cfg.map_size, heads and dropout from model_cfg.
The score weights are not in the file (their opt.json has clip_scale_w / frame_scale_w): they come
from the base config, else their defaults 0.7 / 0.3 (do_charades.sh: 0.5 / 0.5, give a base config).
Their pooling layers (Identity, AvgPool1d) and NCE criteria hold no tensors; every tensor maps.
"""
from __future__ import annotations

from pathlib import Path

from prvr.checkpoints.common import (CheckpointImportError, ReleaseFile, bert_attention, need, pooling,
                                     positions, projection, strip_data_parallel)
from prvr.config import ModelConfig

DEFAULTS = {"model": {"dropout": 0.1, "input_dropout": 0.1}, "eval": {"w_clip": 0.7, "w_frame": 0.3}}


def read_model_ckpt(obj, path: Path) -> ReleaseFile:
    """Their {"model", "model_cfg", "epoch"} dict -> ReleaseFile; a one-line error for anything else."""
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointImportError(f"{path}: not a model.ckpt of their train.py (expected a dict with 'model', "
                                    "'model_cfg', 'epoch')")
    cfg = obj.get("model_cfg") if isinstance(obj.get("model_cfg"), dict) else {}
    return ReleaseFile(strip_data_parallel(obj["model"]), dict(cfg), obj.get("epoch"))


def model_cfg_settings(cfg: dict) -> dict:
    """heads and dropout from their model_cfg, where present."""
    pairs = (("heads", "n_heads"), ("dropout", "drop"), ("input_dropout", "input_drop"))
    return {ours: cfg[theirs] for ours, theirs in pairs if theirs in cfg}


def settings(release: ReleaseFile, path: Path) -> tuple[dict, dict]:
    state = release.state
    query_table = need(state, "query_pos_embed.position_embeddings.weight", path)  # (L, H)
    model = {"input_dim": int(need(state, "frame_input_proj.LayerNorm.weight", path).shape[0]),
             "hidden": int(query_table.shape[1]), "max_query_len": int(query_table.shape[0]),
             "frame_tokens": int(need(state, "frame_pos_embed.position_embeddings.weight", path).shape[0]),
             **model_cfg_settings(release.config)}
    text_dim = int(need(state, "query_input_proj.LayerNorm.weight", path).shape[0])
    model["text_input_dim"] = None if text_dim == model["input_dim"] else text_dim
    if "map_size" in release.config:
        model["clip_tokens"] = int(release.config["map_size"])
    return {"model": model}, {}


def encoder(ours: str, proj: str, pos: str, layer: str) -> dict[str, list[str]]:
    return {**projection(f"{ours}.project", proj), **positions(f"{ours}.position", pos),
            **bert_attention(f"{ours}.layer", layer)}


def plan(cfg: ModelConfig) -> dict[str, list[str]]:
    """prvr ms_sl parameter -> their MS_SL_Net tensors."""
    return {**encoder("query_encoder.encoder", "query_input_proj", "query_pos_embed", "query_encoder"),
            **pooling("query_encoder.pool", "modular_vector_mapping"),
            **encoder("clip_encoder", "clip_input_proj", "clip_pos_embed", "clip_encoder"),
            **encoder("frame_encoder", "frame_input_proj", "frame_pos_embed", "frame_encoder"),
            "guided_attention.key.weight": ["mapping_linear.0.weight"],  # their key_clip_guided_attention: key
            "guided_attention.value.weight": ["mapping_linear.1.weight"]}  # value
