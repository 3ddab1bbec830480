"""DL-DKD baseline (prvr.models.dl_dkd, prvr.losses.distill): the distillation on a hand-computed
case and its decay schedule, score branches against a slow loop, the single-branch reading, the
parameter count at the TVR shape, the ablation file and a short training run.
Run: .venv/bin/python -m pytest tests/test_dl_dkd.py -q
"""
import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from prvr.config import Config, DlDkdModelConfig, ModelConfig, merge
from prvr.config_losses import DistillConfig, LossConfig
from prvr.evaluation import model_scores
from prvr.losses import create_loss, multi_positive_nce
from prvr.losses.distill import DistillLoss, decay_factor
from prvr.models import create_model
from prvr.models.dl_dkd import EXPLORATION, INHERITANCE

CFG = ModelConfig(name="dl_dkd", input_dim=8, hidden=16, heads=4, frame_tokens=6, clip_tokens=2,
                  max_query_len=7, dropout=0.1, input_dropout=0.1)
SINGLE = replace(CFG, dl_dkd=DlDkdModelConfig(exploration_branch=False))


def make_batch(per_video=(2, 1, 3), seed=0, dim=8, frames=6):
    g = torch.Generator().manual_seed(seed)
    q2v = torch.tensor([v for v, k in enumerate(per_video) for _ in range(k)])
    lengths = torch.randint(1, 6, (len(q2v),), generator=g)
    mask = torch.arange(5)[None] < lengths[:, None]  # (Q, 5)
    return {"frame_feats": torch.randn(len(per_video), frames, dim, generator=g),
            "query_feats": torch.randn(len(q2v), 5, dim, generator=g), "query_mask": mask,
            "query_to_video": q2v, "query_eot": torch.randn(len(q2v), dim, generator=g)}


# --- distillation ---

def test_distill_hand_computed_one_caption_three_frames():
    """Caption 0 belongs to video 1 (3 frames); video 0 must not matter. T = 0.5, weight 0.1,
    exp decay 0.95 at epoch 2."""
    query = torch.tensor([[2.0, 0.0]])  # student caption
    tokens = torch.tensor([[[5.0, 5.0], [1.0, 2.0], [0.0, 3.0]],  # video 0: another video
                           [[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]]])  # video 1: cosines 1, 0, -1
    eot = torch.tensor([[0.0, 1.0]])  # teacher caption
    feats = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]],
                          [[0.0, 4.0], [1.0, 1.0], [1.0, 0.0]]])  # video 1: cosines 1, 1/sqrt2, 0
    s, c = [1.0, 0.0, -1.0], [1.0, 1 / math.sqrt(2), 0.0]
    student = [math.exp(x / 0.5) / sum(math.exp(y / 0.5) for y in s) for x in s]
    teacher = [math.exp(x / 0.5) / sum(math.exp(y / 0.5) for y in c) for x in c]
    kl = sum(p * math.log(p / q) for p, q in zip(teacher, student))  # logits (2, 1.414, 0) vs (2, 0, -2)
    loss = DistillLoss(DistillConfig(enabled=True, weight=0.1, temperature=0.5, decay="exp", rate=0.95))
    got = loss(query=query, frame_tokens=tokens, query_eot=eot, frame_feats=feats,
               query_to_video=torch.tensor([1]), epoch=2)
    assert set(got) == {"distill"}
    assert kl == pytest.approx(0.242264, abs=1e-6)
    assert got["distill"].item() == pytest.approx(0.1 * 0.95 ** 2 * kl, rel=1e-5)


def test_distill_sums_over_captions():
    """Their reduction: KL summed over frames and over captions (not averaged)."""
    batch = make_batch()
    g = torch.Generator().manual_seed(3)
    query, tokens = torch.randn(6, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    loss = DistillLoss(DistillConfig(enabled=True, weight=1.0, decay="none"))
    kwargs = dict(query_eot=batch["query_eot"], frame_feats=batch["frame_feats"])
    total = loss(query=query, frame_tokens=tokens, query_to_video=batch["query_to_video"], **kwargs)["distill"]
    parts = [loss(query=query[i:i + 1], frame_tokens=tokens, query_to_video=batch["query_to_video"][i:i + 1],
                  query_eot=batch["query_eot"][i:i + 1], frame_feats=batch["frame_feats"])["distill"]
             for i in range(6)]
    assert total.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-5)


def test_distill_is_zero_when_student_scores_equal_teacher_scores():
    batch = make_batch()
    loss = DistillLoss(DistillConfig(enabled=True, weight=0.1, decay="none"))
    student_query = (3 * batch["query_eot"]).requires_grad_()  # same cosines as the teacher's
    got = loss(query=student_query, frame_tokens=batch["frame_feats"] * 0.5, query_eot=batch["query_eot"],
               frame_feats=batch["frame_feats"], query_to_video=batch["query_to_video"])["distill"]
    assert abs(got.item()) < 1e-6
    got.backward()
    assert student_query.grad.abs().max() < 1e-5  # a minimum


@pytest.mark.parametrize("decay, rate, epochs, expected", [
    ("exp", 0.95, (0, 1, 10), (1.0, 0.95, 0.95 ** 10)),
    ("linear", 0.01, (0, 1, 50, 200), (1.0, 0.99, 0.5, 0.05)),  # their linear_k -0.01, floor 0.05
    ("sigmoid", 800.0, (0, 8), (800 / 801, 800 / (800 + math.e))),  # k / (k + exp(100 epoch / k))
    ("sigmoid", 0.95, (0, 500), (0.95 / (0.95 + 1), 0.0)),  # large exponent: no overflow
    ("none", 0.95, (0, 7), (1.0, 1.0)),
])
def test_decay_schedule(decay, rate, epochs, expected):
    cfg = DistillConfig(enabled=True, decay=decay, rate=rate)
    assert [decay_factor(cfg, e) for e in epochs] == pytest.approx(list(expected), rel=1e-12, abs=1e-300)


def test_distill_bad_input_is_one_clear_error():
    batch = make_batch()
    loss = DistillLoss(DistillConfig(enabled=True))
    args = dict(query=torch.randn(6, 8), frame_tokens=torch.randn(3, 6, 8), query_to_video=batch["query_to_video"])
    with pytest.raises(ValueError, match="needs the batch extras `query_eot` and `frame_feats`"):
        loss(**args)
    with pytest.raises(ValueError, match=r"frame_feats: expected \(3, 6, D\)"):
        loss(**args, query_eot=batch["query_eot"], frame_feats=batch["frame_feats"][:, :4])


# --- model and scores ---

def _slow_branch(query, tokens):
    return torch.tensor([[max(float(F.cosine_similarity(q, t, dim=0)) for t in video) for video in tokens]
                         for q in query])


def test_score_branches_match_a_slow_loop():
    model = create_model(CFG, seed=0).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch["frame_feats"], batch["query_feats"], batch["query_mask"])
    assert model.score_branches == (EXPLORATION, INHERITANCE)
    assert out["exploration_query"].shape == (6, 16) and out["exploration_tokens"].shape == (3, 6, 16)
    assert out["query"].shape == (6, 16) and out["frame_tokens"].shape == (3, 6, 16) and "clip_tokens" not in out
    got = model_scores.model_scores_chunked(out, out, model.score_branches, (0.3, 0.7), query_chunk=4)
    want = (0.3 * _slow_branch(out["exploration_query"], out["exploration_tokens"])
            + 0.7 * _slow_branch(out["query"], out["frame_tokens"]))
    assert torch.allclose(got.float(), want, atol=1e-6)


def test_single_branch_scores_rank_as_the_inheritance_score():
    """Without exploration (their single-branch eval: the inheritance score alone)."""
    model = create_model(SINGLE, seed=0).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch["frame_feats"], batch["query_feats"], batch["query_mask"])
    assert set(out) == {"query", "frame_tokens"} and model.score_branches == (INHERITANCE, INHERITANCE)
    got = model_scores.model_scores_chunked(out, out, model.score_branches, (0.3, 0.5))
    inheritance = _slow_branch(out["query"], out["frame_tokens"]).double()
    assert torch.allclose(got, 0.8 * inheritance, atol=1e-6)
    assert torch.equal(got.argsort(dim=1), inheritance.argsort(dim=1))


@pytest.mark.parametrize("cfg, names", [
    (CFG, {"nce_exploration", "trip_exploration", "nce_inheritance", "trip_inheritance", "distill"}),
    (SINGLE, {"nce_inheritance", "trip_inheritance", "distill"})], ids=["two_branches", "single"])
def test_loss_terms_and_nce_weights(cfg, names):
    """Exploration nce weighted by loss.nce_weight_clip, inheritance by nce_weight_frame (also
    without exploration: their 0.04 * inher nce)."""
    model = create_model(cfg, seed=1).eval()
    batch = make_batch()
    out = model(batch["frame_feats"], batch["query_feats"], batch["query_mask"])
    loss_cfg = LossConfig(nce_weight_clip=0.5, nce_weight_frame=0.04, distill=DistillConfig(enabled=True))
    extras = {k: batch[k] for k in ("query_to_video", "query_eot", "frame_feats")}
    terms = create_loss(loss_cfg, model_name="dl_dkd", branches=model.score_branches)(
        **out, **extras, epoch=0, generator=torch.Generator().manual_seed(0))
    assert set(terms) == names
    positives = F.one_hot(batch["query_to_video"], 3).bool()
    dots = torch.einsum("qh,bnh->qbn", out["query"], out["frame_tokens"]).amax(dim=-1)
    want = 0.04 * multi_positive_nce(dots, positives).item()
    assert terms["nce_inheritance"].item() == pytest.approx(want, rel=1e-5)
    if "nce_exploration" in names:
        dots = torch.einsum("qh,bnh->qbn", out["exploration_query"], out["exploration_tokens"]).amax(dim=-1)
        want = 0.5 * multi_positive_nce(dots, positives).item()
        assert terms["nce_exploration"].item() == pytest.approx(want, rel=1e-5)


def test_parameter_count_at_the_tvr_shape():
    """768 in, 384 / 384 units, 128 frames, 77 query positions. Their ICCV model built at the same
    shape (in a scratch dir) has 4,012,800, of which A_query_input_proj (296,832) is never called."""
    cfg = ModelConfig(name="dl_dkd", input_dim=768, hidden=384, frame_tokens=128, clip_tokens=32)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(create_model(cfg)) == 4_012_800 - 296_832 == 3_715_968
    single = replace(cfg, dl_dkd=DlDkdModelConfig(exploration_branch=False))
    assert count(create_model(single)) == 2_006_400  # theirs with double_branch false, the same


def test_undecayed_norms():
    model = create_model(CFG)
    names = model.no_weight_decay()
    assert {"inherit_query.layer.norm.weight", "explore_video.layer.norm.bias",
            "query_project.net.0.weight", "explore_video.position.norm.weight"} <= names
    assert all("norm" in n or ".net.0." in n for n in names)
    assert not any(n.startswith("explore") for n in create_model(SINGLE).no_weight_decay())


def test_ablation_file_reads_their_settings():
    from pathlib import Path

    from prvr.config_sources import ablation_config
    from prvr.config import load_config
    repo = Path(__file__).resolve().parents[1]
    cfg = ablation_config(load_config(repo / "config/config.yaml"), repo / "config/ablations/dl_dkd.yaml")
    assert cfg.model.name == "dl_dkd" and cfg.model.dl_dkd.exploration_branch
    assert (cfg.eval.w_clip, cfg.eval.w_frame) == (0.3, 0.7) and cfg.loss.hard_negative_start_epoch == 0
    assert cfg.loss.distill == DistillConfig(enabled=True, weight=0.1, temperature=0.2, decay="exp", rate=0.95)
    create_model(cfg.model)


# --- training ---

def test_training_steps_decrease_the_loss(tmp_path):
    """A few epochs with prvr.training.trainer.train (the fixture data of test_trainer) lower every
    term: both branches' retrieval terms and the distillation (decay "none": not by the schedule)."""
    import h5py
    import numpy as np
    from prvr.training.trainer import TrainData, train
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "v.h5", "w") as fv, h5py.File(tmp_path / "t.h5", "w") as ft:
        for split, n in (("train", 12), ("val", 6)):
            lines = []
            for i in range(n):
                frames = rng.normal(size=(int(rng.integers(4, 10)), 8)).astype(np.float32)
                fv[f"{split}{i}"] = frames
                for k in range(2):
                    ft[f"{split}{i}#enc#{k}"] = (frames.mean(0) + 0.1 * rng.normal(size=(3, 8))).astype(np.float32)
                    lines.append(f"{split}{i}#enc#{k} caption\n")
            (tmp_path / f"{split}.txt").write_text("".join(lines))
    data = TrainData(tmp_path / "train.txt", tmp_path / "val.txt", tmp_path / "v.h5", tmp_path / "t.h5")
    cfg = merge(Config(), {
        "model": {"name": "dl_dkd", "input_dim": 8, "hidden": 16, "heads": 2, "frame_tokens": 6,
                  "clip_tokens": 2, "dropout": 0.1, "input_dropout": 0.1},
        "loss": {"nce_weight_clip": 0.04, "hard_negative_start_epoch": 0,
                 "distill": {"enabled": True, "decay": "none"}},
        "train": {"epochs": 6, "batch_size": 4, "lr": 3e-3, "early_stop": 10, "num_threads": 1},
        "eval": {"w_clip": 0.3, "w_frame": 0.7}})
    train(cfg, 1, data, tmp_path / "run")
    log = [json.loads(line)["loss"] for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    assert set(log[0]) == {"loss", "distill", "nce_exploration", "trip_exploration", "nce_inheritance",
                           "trip_inheritance"}
    for term in log[0]:
        assert log[-1][term] < log[0][term], term
