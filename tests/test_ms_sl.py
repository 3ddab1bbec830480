"""MS-SL baseline (model.name ms_sl): sliding-window proposals, key-clip guided attention, the score
against their inference formula, the loss against a direct re-computation of their formulas, a
tiny training run, and the parameter count at the TVR shape."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prvr.config import Config, ModelConfig, merge
from prvr.config_losses import LossConfig
from prvr.data.dataset import PRVRDataset
from prvr.evaluation import model_scores
from prvr.evaluation.evaluate import evaluate_split
from prvr.losses import create_loss
from prvr.losses.ms_sl import MsSlLoss
from prvr.models import create_model
from prvr.models.base import MAX_CLIP_AND_FRAME
from prvr.models.ms_sl import KeyClipGuidedAttention, MsSl, sliding_windows
from prvr.training.trainer import load_trained, train

TINY_MODEL = ModelConfig(name="ms_sl", input_dim=8, hidden=16, heads=2, frame_tokens=6,
                         clip_tokens=3, max_query_len=7, dropout=0.1, input_dropout=0.1)


def tiny_inputs(seed=0, videos=3, queries=5):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(videos, TINY_MODEL.frame_tokens, TINY_MODEL.input_dim, generator=g)
    feats = torch.randn(queries, TINY_MODEL.max_query_len, TINY_MODEL.input_dim, generator=g)
    lengths = torch.tensor([2, 7, 4, 1, 5][:queries])
    mask = torch.arange(TINY_MODEL.max_query_len)[None, :] < lengths[:, None]
    return frames, feats, mask


def test_three_clips_give_six_proposals_in_their_order():
    model = create_model(TINY_MODEL, seed=0)
    clips = torch.tensor([[[1.0, 0.0], [2.0, 3.0], [4.0, 9.0]]])  # (1, 3, 2)
    want = torch.tensor([[[1.0, 0.0], [2.0, 3.0], [4.0, 9.0],  # window 1
                          [1.5, 1.5], [3.0, 6.0],  # window 2: clips 0-1, 1-2
                          [7.0 / 3.0, 4.0]]])  # window 3
    assert torch.allclose(model.proposals(clips), want)
    assert sliding_windows(3).shape == (6, 3)


def test_proposals_equal_their_avgpool_concatenation():
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    pools = [nn.Identity()] + [nn.AvgPool1d(k, stride=1) for k in range(2, 6)]
    want = torch.cat([p(clips.permute(0, 2, 1)).permute(0, 2, 1) for p in pools], dim=1)
    model = MsSl(ModelConfig(name="ms_sl", input_dim=8, hidden=4, heads=2, frame_tokens=10, clip_tokens=5))
    assert torch.equal(model.proposals(clips), want)  # 0/1 sums / k: exact, as AvgPool1d


def test_guided_attention_hand_computed():
    guided = KeyClipGuidedAttention(2)
    with torch.no_grad():
        guided.key.weight.copy_(2 * torch.eye(2))
        guided.value.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swaps the coordinates
    frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2 frames, 2)
    proposals = torch.tensor([[[math.log(3) / 2, 0.0], [0.0, 0.0]]])  # logits [ln 3, 0] and [0, 0]
    # weights [3/4, 1/4] and [1/2, 1/2] over the frames, then the swapped frames
    want = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    assert torch.allclose(guided(frames, proposals), want, atol=1e-6)


def test_outputs_and_padding():
    model = create_model(TINY_MODEL, seed=0).eval()
    frames, feats, mask = tiny_inputs()
    out = model(frame_feats=frames, query_feats=feats, query_mask=mask)
    shapes = {"query": (5, 16), "frame_tokens": (3, 6, 16), "clip_tokens": (3, 3, 16),
              "frame_to_clip": (3, 6), "proposals": (3, 6, 16), "guided_frames": (3, 6, 16)}
    assert {k: tuple(out[k].shape) for k in shapes} == shapes
    assert torch.equal(out["frame_to_clip"][0], torch.tensor([0, 0, 1, 1, 2, 2]))
    padded = feats.clone()
    padded[~mask] = 1e3  # what sits in padded positions must not matter
    again = model.encode_queries(padded, mask)["query"]
    assert torch.allclose(again, out["query"], atol=1e-6)
    assert "windows" not in model.state_dict()
    no_decay = model.no_weight_decay()
    assert {"frame_encoder.layer.norm.weight", "query_encoder.encoder.position.norm.weight"} <= no_decay


def _their_inference(out, model, w_clip, w_frame):
    """Slow loop of their get_pred_from_raw_query (inference): the key clip's guided feature is
    recomputed from the frame tokens and the guided attention's weights."""
    query, props, frames = out["query"], out["proposals"], out["frame_tokens"]
    wk, wv = model.guided_attention.key.weight, model.guided_attention.value.weight
    scores = torch.empty(len(query), len(props))
    for q in range(len(query)):
        for v in range(len(props)):
            cosines = [float(F.cosine_similarity(query[q], p, dim=0)) for p in props[v]]
            best = cosines.index(max(cosines))
            logits = torch.stack([props[v, best] @ (wk @ f) for f in frames[v]])
            guided = sum(w * (wv @ f) for w, f in zip(logits.softmax(dim=0), frames[v]))
            frame_score = float(F.cosine_similarity(query[q], guided, dim=0))
            scores[q, v] = w_clip * max(cosines) + w_frame * frame_score
    return scores


def test_evaluation_score_is_their_inference_formula():
    model = create_model(TINY_MODEL, seed=3).eval()
    frames, feats, mask = tiny_inputs(seed=4)
    with torch.no_grad():
        out = model(frame_feats=frames, query_feats=feats, query_mask=mask)
        want = _their_inference(out, model, 0.7, 0.3)
    got = model_scores.model_scores_chunked({"query": out["query"]}, out, model.score_branches, (0.7, 0.3),
                                            query_chunk=2)
    assert torch.allclose(got.float(), want, atol=1e-5)


def _reference_terms(query, props, guide, q2v, margin, w_clip, w_frame):
    """Their four terms written out from the formulas, hardest negatives everywhere (pool 1)."""
    n_q, n_v = len(query), len(props)
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))
    s = [[max(float(query[q] @ p) for p in props[b]) for b in range(n_v)] for q in range(n_q)]
    c = [[max(cos(query[q], p) for p in props[b]) for b in range(n_v)] for q in range(n_q)]
    lse = lambda xs: math.log(sum(math.exp(x) for x in xs))
    t2v = sum(lse(s[q]) - s[q][q2v[q]] for q in range(n_q)) / n_q
    own = [[q for q in range(n_q) if q2v[q] == b] for b in range(n_v)]
    v2t = sum(lse([s[q][b] for q in range(n_q)]) - lse([s[q][b] for q in own[b]]) for b in range(n_v)) / n_v
    trip_t2v = sum(max(0.0, margin + max(c[q][b] for b in range(n_v) if b != q2v[q]) - c[q][q2v[q]])
                   for q in range(n_q)) / n_q
    trip_v2t = sum(max(0.0, margin + max(c[q][b] for q in range(n_q) if q not in own[b])
                       - sum(c[q][b] for q in own[b]) / len(own[b])) for b in range(n_v)) / n_v
    keys = []
    for q in range(n_q):
        cosines = [cos(query[q], p) for p in props[q2v[q]]]
        keys.append(guide[q2v[q], cosines.index(max(cosines))])
    fd = [[float(query[i] @ keys[j]) for j in range(n_q)] for i in range(n_q)]
    fc = [[cos(query[i], keys[j]) for j in range(n_q)] for i in range(n_q)]
    frame_nce = sum(lse(fd[i] + [fd[j][i] for j in range(n_q)]) - fd[i][i] for i in range(n_q)) / n_q
    rows = sum(max(0.0, margin + max(fc[i][j] for j in range(n_q) if j != i) - fc[i][i]) for i in range(n_q))
    cols = sum(max(0.0, margin + max(fc[j][i] for j in range(n_q) if j != i) - fc[i][i]) for i in range(n_q))
    return {"nce_clip": w_clip * (t2v + v2t), "trip_clip": trip_t2v + trip_v2t,
            "nce_frame": w_frame * frame_nce, "trip_frame": (rows + cols) / n_q}


def _loss_inputs(seed=5):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(5, 4, generator=g, dtype=torch.float64)
    props = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    guide = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    return query, props, guide, torch.tensor([0, 0, 1, 2, 2])


def test_loss_terms_equal_their_formulas_with_hard_negatives():
    query, props, guide, q2v = _loss_inputs()
    cfg = LossConfig(nce_weight_clip=0.02, nce_weight_frame=0.04, margin=0.3, hard_negative_topk=1,
                     hard_negative_start_epoch=0)
    loss = create_loss(cfg, model_name="ms_sl", branches=MsSl.score_branches)
    got = loss(query=query, proposals=props, guided_frames=guide, query_to_video=q2v, epoch=0)
    want = _reference_terms(query, props, guide, q2v.tolist(), 0.3, 0.02, 0.04)
    assert set(got) == set(want)
    for name in want:
        assert float(got[name]) == pytest.approx(want[name], abs=1e-10), name
    assert all(t > 0 for t in want.values())  # every term is active in this case


def test_random_negatives_before_the_start_epoch_lie_between_easiest_and_hardest():
    query, props, guide, q2v = _loss_inputs(seed=6)
    cfg = LossConfig(margin=5.0, hard_negative_topk=1, hard_negative_start_epoch=3)  # margin: hinges active
    loss = MsSlLoss(cfg, MsSl.score_branches)
    hardest = loss(query=query, proposals=props, guided_frames=guide, query_to_video=q2v, epoch=3)
    draws = [loss(query=query, proposals=props, guided_frames=guide, query_to_video=q2v, epoch=0,
                  generator=torch.Generator().manual_seed(s)) for s in range(20)]
    for name in ("trip_clip", "trip_frame"):
        values = torch.stack([d[name] for d in draws])
        assert (values <= hardest[name] + 1e-12).all() and values.std() > 0, name
        assert torch.equal(draws[0]["nce_clip"], hardest["nce_clip"])  # NCE has no sampling


def test_loss_needs_a_guided_branch_and_the_outputs():
    with pytest.raises(ValueError, match="guided branch"):
        MsSlLoss(LossConfig(), MAX_CLIP_AND_FRAME)
    query, props, _, q2v = _loss_inputs()
    with pytest.raises(ValueError, match="guided_frames"):
        MsSlLoss(LossConfig(), MsSl.score_branches)(query=query, proposals=props, query_to_video=q2v)


# `data`: the learnable training set of tests/conftest.py


def test_training_lowers_the_loss_and_evaluates(tmp_path, data):
    cfg = merge(Config(), {"model": {"name": "ms_sl", "input_dim": 8, "hidden": 16, "heads": 2,
                                     "frame_tokens": 6, "clip_tokens": 3, "dropout": 0.1},
                           "loss": {"nce_weight_clip": 0.02, "hard_negative_start_epoch": 100},
                           "train": {"epochs": 6, "batch_size": 4, "early_stop": 10, "num_threads": 1,
                                     "lr": 0.003},
                           "eval": {"w_clip": 0.7, "w_frame": 0.3}})
    train(cfg, 1, data, tmp_path / "run")
    history = [json.loads(line) for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    assert set(history[0]["loss"]) == {"nce_clip", "trip_clip", "nce_frame", "trip_frame", "loss"}
    assert history[-1]["loss"]["loss"] < 0.8 * history[0]["loss"]["loss"]
    model, saved_cfg = load_trained(tmp_path / "run/model.pt")
    val = PRVRDataset.for_model(data.val_captions, data.video_feats, data.text_feats, saved_cfg.model)
    metrics = evaluate_split(model, val, saved_cfg.eval)
    assert metrics["SumR"] > 0 and math.isfinite(metrics["SumR"])


def test_parameter_count_at_the_tvr_shape():
    """Their MS_SL_Net at 768 -> 384, max_ctx_l 128, map_size 32 has 3,074,304 parameters with
    max_desc_l 30 and 3,092,352 with 77 (built from their code); ours uses max_query_len 77."""
    model = MsSl(ModelConfig(name="ms_sl", input_dim=768, hidden=384, frame_tokens=128, clip_tokens=32))
    assert sum(p.numel() for p in model.parameters()) == 3_092_352
    assert 3_092_352 - 47 * 384 == 3_074_304  # their max_desc_l 30: 47 fewer query positions
    assert model.windows.shape == (528, 32)
