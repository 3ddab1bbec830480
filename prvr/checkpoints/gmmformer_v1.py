"""GMMFormer v1 (huangmozhi9527/GMMFormer) checkpoints onto prvr's `gmmformer_v1` model.

The same best.ckpt as MSC / GMMFormer v2 (`save_ckpt`: config, epoch, model_val, state_dict,
optimizer; the optimizer is training state and is not read). Settings: sizes from the weight shapes,
frame_tokens from the frame position table (their max_ctx_l), clip_tokens from the saved config's
map_size, widths from the number of attention layers per GMMBlock (no window + 0.5, 1, 5), heads,
dropout and score weights from the saved config. Every model tensor of theirs has a prvr counterpart.
"""
from __future__ import annotations

from pathlib import Path

from prvr.checkpoints.common import (ReleaseFile, bert_attention, need, pooling, positions, projection,
                                     same, stacked)
from prvr.checkpoints.msc import release_widths, shared_settings
from prvr.config import ModelConfig

RELEASE_WIDTHS = (0.5, 1.0, 5.0)  # their GMMBlock attn1..attn3
THEIR_BLOCKS = {"clip_branch": ("clip_encoder", "clip_encoder_2"),
                "frame_branch": ("frame_encoder_1", "frame_encoder_2")}


def settings(release: ReleaseFile, path: Path) -> tuple[dict, dict]:
    overrides, _ = shared_settings(release, path)
    model = overrides["model"]
    model["frame_tokens"] = int(need(release.state, "frame_pos_embed.position_embeddings.weight", path).shape[0])
    if "map_size" in release.config:
        model["clip_tokens"] = int(release.config["map_size"])
    model["gauss_widths"] = list(release_widths(release.state, "clip_encoder", RELEASE_WIDTHS, path))
    return overrides, {}


def windowed_layer(ours: str, theirs: str) -> dict[str, list[str]]:
    """Their BertAttention with a window (self.q/k/v, output.dense, output.LayerNorm) -> prvr
    ResidualAttention(WindowedSelfAttention)."""
    return {**same(f"{ours}.attention.attention.query", f"{theirs}.self.query"),
            **stacked(f"{ours}.attention.attention.key_value", [f"{theirs}.self.key", f"{theirs}.self.value"]),
            **same(f"{ours}.attention.out", f"{theirs}.output.dense"),
            **same(f"{ours}.norm", f"{theirs}.output.LayerNorm")}


def branch(ours: str, n_layers: int) -> dict[str, list[str]]:
    kind = ours.split("_")[0]  # clip / frame
    plan = {**projection(f"{ours}.project", f"{kind}_input_proj"), **positions(f"{ours}.position", f"{kind}_pos_embed")}
    for b, encoder in enumerate(THEIR_BLOCKS[ours]):
        for i in range(n_layers):
            plan.update(windowed_layer(f"{ours}.blocks.{b}.layers.{i}", f"{encoder}.attn{i}"))
    return plan


def plan(cfg: ModelConfig) -> dict[str, list[str]]:
    """prvr gmmformer_v1 parameter -> their GMMFormer_Net tensors."""
    n_layers = 1 + len(cfg.gauss_widths)
    return {**projection("query_encoder.project", "query_input_proj"),
            **positions("query_encoder.position", "query_pos_embed"),
            **bert_attention("query_encoder.layer", "query_encoder"),
            **pooling("query_encoder.pool", "modular_vector_mapping"),
            **branch("clip_branch", n_layers), **branch("frame_branch", n_layers),
            **pooling("frame_pool", "modular_vector_mapping_2")}
