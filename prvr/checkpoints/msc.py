"""MSC_PRVR (admins97/MSC_PRVR) and GMMFormer v2 (huangmozhi9527/GMMFormer_v2) checkpoints onto
prvr's `gmmformer_v2` model.

Their `Utils/utils.py save_ckpt` writes best.ckpt = {"config": cfg dict, "epoch", "model_val"
([R1, R5, R10, R100, Rsum]), "state_dict", "optimizer" (BertAdam state, training only: not read)}.
Settings read: input sizes and hidden from the weight shapes, max_query_len from the query position
table, frame_tokens / clip_tokens from the fusion layers (`layer2`: 128 / 32 rows, hard-coded in
their code), the Gaussian widths from the number of attention layers (their DyGMMBlock: no window +
0.5, 1, 5, 10, 3, 0.1, 8), heads / dropout / fusion temperature (sft_factor) and the score weights
(clip_scale_w, frame_scale_w) from the saved config. MSC's clip branch always reads token-merged
clips (their loader: 128 -> 80 -> 52 -> 32), so its import turns model.merging on with those stages;
GMMFormer v2 pools uniformly.

Not used at evaluation (recorded in the model.pt's imported_from["not_used"]): MSC's `vproj_clip`
(weight, bias), the CBVA projection head of their training loss; in prvr the head is a parameter of
the loss (loss.cbva.head), never of the model, and retrieval scores never read it.
"""
from __future__ import annotations

import re
from pathlib import Path

from prvr.checkpoints.common import (CheckpointImportError, ReleaseFile, need, positions, projection,
                                     pooling, same, stacked, strip_data_parallel)
from prvr.config import ModelConfig

RELEASE_WIDTHS = (0.5, 1.0, 5.0, 10.0, 3.0, 0.1, 8.0)  # their DyGMMBlock attn1..attn7
MSC_MERGE_STAGES = (80, 52, 32)  # their data_provider: token_merge 128 -> 80 -> 52 -> 32
CBVA_HEAD = "CBVA projection head of their training loss (prvr: loss.cbva.head); not used at evaluation"


def read_best_ckpt(obj, path: Path) -> ReleaseFile:
    """Their save_ckpt dict -> ReleaseFile; a one-line error for anything else."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointImportError(f"{path}: not a best.ckpt of save_ckpt (expected a dict with 'state_dict', "
                                    "'config', 'epoch', 'model_val', 'optimizer')")
    cfg = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    return ReleaseFile(strip_data_parallel(obj["state_dict"]), dict(cfg), obj.get("epoch"),
                       _plain(obj.get("model_val")), cfg.get("seed"))


def _plain(value):
    """model_val as JSON-friendly floats (it may hold numpy or torch scalars)."""
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return None if value is None else float(value)


def shared_settings(release: ReleaseFile, path: Path) -> tuple[dict, list[str]]:
    """Settings every GMMFormer-family file holds: sizes from shapes, the rest from the config."""
    state, cfg = release.state, release.config
    query_table = need(state, "query_pos_embed.position_embeddings.weight", path)  # (L, H)
    model = {"input_dim": int(need(state, "frame_input_proj.LayerNorm.weight", path).shape[0]),
             "hidden": int(query_table.shape[1]), "max_query_len": int(query_table.shape[0])}
    text_dim = int(need(state, "query_input_proj.LayerNorm.weight", path).shape[0])
    model["text_input_dim"] = None if text_dim == model["input_dim"] else text_dim
    for ours, theirs in (("heads", "n_heads"), ("dropout", "drop"), ("input_dropout", "input_drop")):
        if theirs in cfg:
            model[ours] = cfg[theirs]
    evaluation = {k: float(cfg[t]) for k, t in (("w_clip", "clip_scale_w"), ("w_frame", "frame_scale_w")) if t in cfg}
    return {"model": model, "eval": evaluation}, [k for k in ("n_heads", "drop", "input_drop", "clip_scale_w",
                                                              "frame_scale_w") if k in cfg]


def count_layers(state: dict, prefix: str) -> int:
    """Number of attention layers attn0..attnK under `prefix`."""
    found = {int(m.group(1)) for k in state for m in [re.match(rf"{re.escape(prefix)}\.attn(\d+)\.", k)] if m}
    return len(found)


def release_widths(state: dict, prefix: str, widths: tuple, path: Path) -> tuple:
    layers = count_layers(state, prefix)
    if layers != len(widths) + 1:
        raise CheckpointImportError(f"{path}: {prefix} has {layers} attention layers, their release has "
                                    f"{len(widths) + 1} (no window + widths {list(widths)})")
    return widths


def settings(release: ReleaseFile, path: Path, merging: bool) -> tuple[dict, dict]:
    overrides, _ = shared_settings(release, path)
    state, cfg = release.state, release.config
    model = overrides["model"]
    model["frame_tokens"] = int(need(state, "frame_encoder_1.layer2.weight", path).shape[0])
    model["clip_tokens"] = int(need(state, "clip_encoder.layer2.weight", path).shape[0])
    model["gauss_widths"] = list(release_widths(state, "clip_encoder", RELEASE_WIDTHS, path))
    if "sft_factor" in cfg:
        model["fusion_temperature"] = float(cfg["sft_factor"])
    model["merging"] = {"enabled": merging, **({"stages": list(MSC_MERGE_STAGES)} if merging else {})}
    not_used = {f"vproj_clip.{p}": CBVA_HEAD for p in ("weight", "bias") if f"vproj_clip.{p}" in state}
    return overrides, not_used


def msc_settings(release: ReleaseFile, path: Path) -> tuple[dict, dict]:
    if "vproj_clip.weight" not in release.state:  # every MSC_PRVR_Net has it; GMMFormer v2 does not
        raise CheckpointImportError(f"{path}: missing tensor 'vproj_clip.weight' (a GMMFormer v2 checkpoint? "
                                    "use --format gmmformer_v2)")
    return settings(release, path, merging=True)


def gmmformer_v2_settings(release: ReleaseFile, path: Path) -> tuple[dict, dict]:
    overrides, not_used = settings(release, path, merging=False)
    if not_used:  # GMMFormer v2 has no CBVA head: vproj_clip means an MSC file
        raise CheckpointImportError(f"{path}: tensor 'vproj_clip.weight' has no counterpart in GMMFormer v2 "
                                    "(an MSC_PRVR checkpoint? use --format msc)")
    return overrides, not_used


def full_layer(ours: str, theirs: str, fused_qkv: bool) -> dict[str, list[str]]:
    """Their BertAttention with FFN (self.q/k/v, output.layer1/layer2, norm1, norm2) -> prvr's
    TransformerLayer (attention.qkv) or WindowedLayer (attention.query + attention.key_value)."""
    q, k, v = (f"{theirs}.self.{n}" for n in ("query", "key", "value"))
    attention = (stacked(f"{ours}.attention.qkv", [q, k, v]) if fused_qkv else
                 {**same(f"{ours}.attention.query", q), **stacked(f"{ours}.attention.key_value", [k, v])})
    return {**attention, **same(f"{ours}.ffn.net.0", f"{theirs}.output.layer1"),
            **same(f"{ours}.ffn.net.3", f"{theirs}.output.layer2"),
            **same(f"{ours}.norm1", f"{theirs}.norm1"), **same(f"{ours}.norm2", f"{theirs}.norm2")}


def branch(ours: str, proj: str, pos: str, encoder: str, n_layers: int) -> dict[str, list[str]]:
    """Their input projection, positions and DyGMMBlock -> prvr ReleasedVideoBranch."""
    plan = {**projection(f"{ours}.project", proj), **positions(f"{ours}.position", pos)}
    for i in range(n_layers):
        plan.update(full_layer(f"{ours}.block.layers.{i}", f"{encoder}.attn{i}", fused_qkv=False))
    plan.update(full_layer(f"{ours}.block.summary", f"{encoder}.ca", fused_qkv=False))
    plan.update(same(f"{ours}.block.fusion_hidden", f"{encoder}.layer1"))
    plan.update(same(f"{ours}.block.fusion_out", f"{encoder}.layer2"))
    return plan


def plan(cfg: ModelConfig) -> dict[str, list[str]]:
    """prvr gmmformer_v2 parameter -> their tensors (names of MSC_PRVR_Net / GMMFormerV2_Net)."""
    n_layers = 1 + len(cfg.gauss_widths)
    return {"weight_token": ["weight_token"],
            **projection("query_encoder.project", "query_input_proj"),
            **positions("query_encoder.position", "query_pos_embed"),
            **full_layer("query_encoder.layer", "query_encoder", fused_qkv=True),
            **pooling("query_encoder.pool", "modular_vector_mapping"),
            **branch("clip_branch", "clip_input_proj", "clip_pos_embed", "clip_encoder", n_layers),
            **branch("frame_branch", "frame_input_proj", "frame_pos_embed", "frame_encoder_1", n_layers)}
