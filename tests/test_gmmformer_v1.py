"""Tests of the GMMFormer v1 baseline (prvr.models.gmmformer_v1) and its query-diversity loss
(prvr.losses.query_diverse): the Gaussian window by hand, a GMMBlock against a slow per-head loop of
their formulas, the loss by hand and under caption reordering, the score branches through
prvr.evaluation.model_scores, training through prvr.training.trainer, the TVR parameter count.
Run: .venv/bin/python -m pytest tests/test_gmmformer_v1.py -q
"""
import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from prvr.config import Config, ModelConfig, merge
from prvr.config_losses import LossConfig, QueryDiverseConfig
from prvr.evaluation.model_scores import model_scores_chunked
from prvr.losses import create_loss
from prvr.losses.query_diverse import QueryDiverseLoss, query_diverse_loss, sibling_mask
from prvr.models import ModelInputError, create_model
from prvr.models.common import l2_normalise
from prvr.models.gmmformer_v1 import GMMBlock, GMMFormerV1
from prvr.models.parallel_gmm import gaussian_window
from prvr.training.trainer import train

CFG = ModelConfig(name="gmmformer_v1", input_dim=12, hidden=16, heads=2, frame_tokens=8, clip_tokens=4,
                  gauss_widths=(0.5, 1.0, 5.0), max_query_len=10)


def inputs(n_videos=3, n_queries=4, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = 3 * torch.randn(n_videos, CFG.frame_tokens, CFG.input_dim, generator=g) + 1
    queries = 2 * torch.randn(n_queries, length, CFG.input_dim, generator=g)
    mask = torch.arange(length)[None, :] < torch.tensor([6, 1, 3, 4])[:n_queries, None]
    return frames, queries, mask


# --- the Gaussian window and the GMMBlock ---

def test_gaussian_window_by_hand():
    # their generate_gauss_weight, 3 tokens, width 1: sigma 1/9; query centres i/3 = 0, 1/3, 2/3;
    # key grid linspace(0, 1, 3) = 0, 1/2, 1; entry exp(-40.5 (d^2 - d_nearest^2)) (row max 1)
    g = gaussian_window(3, 1.0)
    want = torch.tensor([[1.0, math.exp(-10.125), math.exp(-40.5)],
                         [math.exp(-3.375), 1.0, math.exp(-16.875)],
                         [math.exp(-16.875), 1.0, math.exp(-3.375)]])
    assert torch.allclose(g, want, rtol=1e-5, atol=0)
    # the centres are i / N, not the key grid j / (N - 1): row 2 peaks at key 1, not at its own key


def _slow_bert_attention(layer, x, width):
    """Their BertAttention written out per head: separate q/k/v, logits * window, softmax, output
    dense, LN(x + .). Weights read from our layer (query; key_value = [key; value])."""
    attn = layer.attention.attention
    h = x.shape[-1]
    w_k, w_v = attn.key_value.weight.split(h)
    b_k, b_v = attn.key_value.bias.split(h)
    q, k, v = attn.query(x), x @ w_k.t() + b_k, x @ w_v.t() + b_v  # (B, N, H)
    n, d = x.shape[1], h // attn.heads
    if width is not None:  # their formula literally: w / s * exp(...) over its row max
        centre = torch.arange(n, dtype=torch.float64)[:, None] / n
        grid = torch.linspace(0, 1, n, dtype=torch.float64)[None, :]
        s = max(width, 1e-2) / 9
        window = 0.3989422804014327 / s * torch.exp(-(grid - centre) ** 2 / (2 * s ** 2))
        window = (window / window.max(dim=-1, keepdim=True).values).to(x.dtype)
    heads = []
    for head in range(attn.heads):
        cols = slice(head * d, (head + 1) * d)
        logits = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(d)  # (B, N, N)
        if width is not None:
            logits = logits * window
        heads.append(logits.softmax(dim=-1) @ v[..., cols])
    context = torch.cat(heads, dim=-1)
    return layer.norm(x + layer.attention.out(context))


def test_gmm_block_equals_slow_reference():
    torch.manual_seed(0)
    block = GMMBlock(hidden=8, heads=2, dropout=0.1, widths=(0.5, 1.0, 5.0)).eval()
    x = torch.randn(2, 5, 8)
    want = torch.stack([_slow_bert_attention(layer, x, w)
                        for layer, w in zip(block.layers, (None, 0.5, 1.0, 5.0))]).mean(dim=0)
    assert len(block.layers) == 4
    assert torch.allclose(block(x), want, atol=1e-5)
    # the window changes the result: a block without windows differs
    assert not torch.allclose(_slow_bert_attention(block.layers[1], x, None),
                              _slow_bert_attention(block.layers[1], x, 0.5), atol=1e-3)


# --- the model ---

def test_outputs_shapes_and_video_vector_is_the_pooled_frames():
    model = create_model(CFG, seed=0).eval()
    frames, queries, mask = inputs()
    out = model(frames, queries, mask)
    assert out["query"].shape == (4, 16) and out["clip_tokens"].shape == (3, 4, 16)
    assert out["frame_tokens"].shape == (3, 8, 16) and out["video_vector"].shape == (3, 1, 16)
    assert out["frame_to_clip"].shape == (3, 8)
    weights = model.frame_pool.score(out["frame_tokens"]).softmax(dim=1)  # (B, Nf, 1)
    assert torch.allclose(out["video_vector"][:, 0], (weights * out["frame_tokens"]).sum(1), atol=1e-6)


def test_query_encoder_packed_equals_padded_and_ignores_padding():
    model = create_model(CFG, seed=0).eval()
    _, queries, mask = inputs()
    packed = model.encode_queries(queries, mask)["query"]
    padded = model.query_encoder.forward_padded(l2_normalise(queries), mask)
    assert torch.allclose(packed, padded, atol=1e-6)
    noisy = queries + 5 * (~mask)[..., None] * torch.randn_like(queries)  # change only the padding
    assert torch.allclose(model.encode_queries(noisy, mask)["query"], packed, atol=1e-6)


def test_no_weight_decay_is_every_layernorm():
    # their optimiser exempts modules named LayerNorm: in v1 that is every LayerNorm of the model
    model = create_model(CFG, seed=0)
    norms = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)
             for p, _ in mod.named_parameters()}
    assert model.no_weight_decay() == norms and len(norms) == 2 * (6 + 1 + 2 * 2 * 4)


def test_tvr_shape_parameter_count_is_theirs():
    # their GMMFormer_Net at the TVR shape, measured: 11,069,568 with max_desc_l 30, and each
    # extra query position adds one row of 384
    cfg = ModelConfig(name="gmmformer_v1", input_dim=768, hidden=384, heads=4, frame_tokens=128,
                      clip_tokens=32, gauss_widths=(0.5, 1.0, 5.0), max_query_len=30)
    assert sum(p.numel() for p in GMMFormerV1(cfg).parameters()) == 11_069_568
    cfg77 = replace(cfg, max_query_len=77)
    assert sum(p.numel() for p in GMMFormerV1(cfg77).parameters()) == 11_069_568 + 47 * 384


def test_videos_need_exactly_frame_tokens():
    model = create_model(CFG, seed=0)
    _, queries, mask = inputs()
    with pytest.raises(ModelInputError, match="frame tokens"):
        model(torch.randn(2, 7, 12), queries, mask)


# --- score branches ---

def test_score_branches_through_model_scores_by_hand():
    model = create_model(CFG, seed=0).eval()
    frames, queries, mask = inputs()
    with torch.no_grad():
        out = model(frames, queries, mask)
    videos = {key: out[key] for key in ("clip_tokens", "video_vector")}
    got = model_scores_chunked({"query": out["query"]}, videos, model.score_branches, (0.7, 0.3))
    want = torch.empty(4, 3, dtype=torch.float64)
    for q in range(4):
        for v in range(3):
            clip = max(float(F.cosine_similarity(out["query"][q], c, dim=0)) for c in out["clip_tokens"][v])
            frame = float(F.cosine_similarity(out["query"][q], out["video_vector"][v, 0], dim=0))
            want[q, v] = 0.7 * clip + 0.3 * frame
    assert torch.allclose(got, want, atol=1e-6)


# --- the query-diversity loss ---

def test_query_diverse_by_hand_two_videos_three_captions():
    # video 0: captions 0 and 1 (cos 1/sqrt 2); video 1: caption 2 alone (adds log 1 = 0, counted)
    query = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    q2v = torch.tensor([0, 0, 1])
    m, s = 0.15, 2.0
    pair = math.log(1 + math.exp(s * (1 / math.sqrt(2) + m)))
    assert math.isclose(query_diverse_loss(query, q2v, m, s).item(), 2 * pair / 3, rel_tol=1e-6)
    part = QueryDiverseLoss(QueryDiverseConfig(enabled=True, weight=0.5, margin=m, scale=s))
    assert math.isclose(part(query=query, query_to_video=q2v, frame_tokens=None)["query_diverse"].item(),
                        0.5 * 2 * pair / 3, rel_tol=1e-6)


def test_query_diverse_is_invariant_to_caption_order():
    g = torch.Generator().manual_seed(3)
    query, q2v = torch.randn(7, 5, generator=g), torch.tensor([0, 0, 0, 1, 2, 2, 1])  # not consecutive
    base = query_diverse_loss(query, q2v, 0.15, 32.0)
    for seed in range(3):
        perm = torch.randperm(7, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(query_diverse_loss(query[perm], q2v[perm], 0.15, 32.0), base, rtol=1e-6)
    # siblings are the same video's captions wherever they sit (their block mask assumes runs)
    assert sibling_mask(torch.tensor([0, 1, 0])).tolist() == [[False, False, True], [False, False, False],
                                                              [True, False, False]]


def test_query_diverse_stays_finite_where_exp_overflows():
    query, q2v = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0])
    got = query_diverse_loss(query, q2v, 0.15, 1000.0)  # exp(1150) overflows float32
    assert torch.isfinite(got) and math.isclose(got.item(), 1150.0, rel_tol=1e-6)


def test_create_loss_terms_for_the_baseline():
    model = create_model(CFG, seed=0)
    frames, queries, mask = inputs()
    loss_fn = create_loss(LossConfig(query_diverse=QueryDiverseConfig(enabled=True)), hidden=16,
                          model_name="gmmformer_v1", branches=model.score_branches)
    terms = loss_fn(**model(frames, queries, mask), query_to_video=torch.tensor([0, 0, 1, 2]), epoch=0,
                    generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"nce_clip", "trip_clip", "nce_frame", "trip_frame", "query_diverse"}
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


# --- training ---

# `data`: the learnable training set of tests/conftest.py


def test_training_decreases_the_loss(tmp_path, data):
    cfg = merge(Config(), {
        "model": {"name": "gmmformer_v1", "input_dim": 8, "hidden": 16, "heads": 2, "frame_tokens": 6,
                  "clip_tokens": 3, "gauss_widths": [0.5, 1.0, 5.0], "dropout": 0.0, "input_dropout": 0.0},
        "loss": {"query_diverse": {"enabled": True}, "hard_negative_start_epoch": 0, "hard_negative_topk": 1},
        "train": {"epochs": 6, "batch_size": 4, "lr": 0.003, "early_stop": 10, "num_threads": 1},
        "eval": {"w_clip": 0.7, "w_frame": 0.3}})
    summary = train(cfg, 1, data, tmp_path / "run")
    history = [json.loads(line) for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    assert summary["epochs_run"] == 6 and "query_diverse" in history[0]["loss"]
    losses = [h["loss"]["loss"] for h in history]
    assert losses[-1] < 0.5 * losses[0], losses
