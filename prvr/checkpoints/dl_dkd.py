"""DL-DKD (HuiGuanLab/DL-DKD, branch `iccv`, the ICCV 2023 student) checkpoints onto prvr's
`dl_dkd` model.

The same model.ckpt layout as MS-SL ({"model", "model_cfg", "epoch"}). Their B_* modules are the
inheritance branch, A_* the exploration branch (present with --double_branch, which is not in the
file: it is read from the presence of A_* tensors). Settings: sizes from the weight shapes (both
widths must be equal, as prvr's dl_dkd has one `hidden`), frame_tokens from the frame position table,
heads and dropout from model_cfg; score weights from the base config, else their test's 0.3 / 0.7.

Not used at evaluation (recorded in imported_from["not_used"]): `A_query_input_proj` (LayerNorm and
linear), which their ICCV code builds but never calls (the exploration query reads
B_query_input_proj, as prvr's shared `query_project` does).

Not importable: DL-DKD++ (branch `master`, the published DLDKD++_checkpoint.zip): its exploration
branch has a query projection of its own (exp_query_input_proj), which prvr's dl_dkd does not have.
"""
from __future__ import annotations

from pathlib import Path

from prvr.checkpoints.common import (CheckpointImportError, ReleaseFile, bert_attention, need, pooling,
                                     positions, projection, same)
from prvr.checkpoints.ms_sl import model_cfg_settings
from prvr.config import ModelConfig

DEFAULTS = {"model": {"dropout": 0.1, "input_dropout": 0.1}, "eval": {"w_clip": 0.3, "w_frame": 0.7}}
UNCALLED = "built by their ICCV code but never called (exploration queries use B_query_input_proj); not used at evaluation"


def settings(release: ReleaseFile, path: Path) -> tuple[dict, dict]:
    state = release.state
    if any(k.startswith(("exp_", "visual_encoder.")) for k in state):
        raise CheckpointImportError(f"{path}: a DL-DKD++ (master branch) checkpoint: tensor 'exp_query_input_proj' "
                                    "has no counterpart in prvr's dl_dkd (the ICCV student shares one query projection)")
    query_table = need(state, "B_query_pos_embed.position_embeddings.weight", path)  # (L, H)
    explore = "A_frame_encoder.self.query.weight" in state
    model = {"input_dim": int(need(state, "B_frame_input_proj.LayerNorm.weight", path).shape[0]),
             "hidden": int(query_table.shape[1]), "max_query_len": int(query_table.shape[0]),
             "frame_tokens": int(need(state, "B_frame_pos_embed.position_embeddings.weight", path).shape[0]),
             "dl_dkd": {"exploration_branch": explore}, **model_cfg_settings(release.config)}
    text_dim = int(need(state, "B_query_input_proj.LayerNorm.weight", path).shape[0])
    model["text_input_dim"] = None if text_dim == model["input_dim"] else text_dim
    if explore:
        width = int(need(state, "A_query_pos_embed.position_embeddings.weight", path).shape[1])
        if width != model["hidden"]:
            raise CheckpointImportError(f"{path}: tensor 'A_query_pos_embed.position_embeddings.weight' is {width} "
                                        f"wide, the inheritance branch {model['hidden']}: prvr's dl_dkd has one width")
    not_used = {f"A_query_input_proj.{p}": UNCALLED for p in ("LayerNorm.weight", "LayerNorm.bias",
                                                              "net.1.weight", "net.1.bias")
                if f"A_query_input_proj.{p}" in state}
    return {"model": model}, not_used


def branch_plan(ours: str, theirs: str) -> dict[str, list[str]]:
    """One student branch: prvr {ours}_query / {ours}_video <- their {theirs}_* modules."""
    q, v = f"{ours}_query", f"{ours}_video"
    return {**positions(f"{q}.position", f"{theirs}_query_pos_embed"),
            **bert_attention(f"{q}.layer", f"{theirs}_query_encoder"),
            **pooling(f"{q}.pool", f"{theirs}_modular_vector_mapping"),
            **projection(f"{v}.project", f"{theirs}_frame_input_proj"),
            **positions(f"{v}.position", f"{theirs}_frame_pos_embed"),
            **bert_attention(f"{v}.layer", f"{theirs}_frame_encoder"),
            **same(f"{v}.out_mapping", f"{theirs}_mapping_linear")}


def plan(cfg: ModelConfig) -> dict[str, list[str]]:
    """prvr dl_dkd parameter -> their DLDKD (ICCV) tensors."""
    plan = {**projection("query_project", "B_query_input_proj"), **branch_plan("inherit", "B")}
    if cfg.dl_dkd.exploration_branch:
        plan.update(branch_plan("explore", "A"))
    return plan
