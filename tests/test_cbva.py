"""Tests of CBVA and adaptive CBVA (prvr.losses.cbva, prvr.losses.adaptive) and of the loss factory:
hand-worked cases, a per-video loop reference of the authors' form, gradients, padding, the weights
form, segment counts on constructed graphs, and the full objective on real model outputs.
Run: .venv/bin/python -m pytest tests/test_cbva.py -q
"""
import math
from dataclasses import replace

import pytest
import torch

from prvr.config import ConfigError, ModelConfig
from prvr.config_losses import AdaptiveConfig, CbvaConfig, LossConfig, TcplConfig
from prvr.losses import create_loss
from prvr.losses.adaptive import (adaptive_segments, connectivity_ratio, segment_counts,
                                  segment_pair_weights, transitive_closure)
from prvr.losses.cbva import (CbvaLoss, frame_to_segment_loss, infonce_cbva,
                              segment_to_frame_loss, within_video_cbva)

F64 = torch.float64


def log1p_exp(x):
    return math.log(1 + math.exp(x))


# One video: frames f0 = (1, 0), f1 = (0, 1), f2 = (1, 1); segments c0 = (2, 0) holds f0, f1 and
# c1 = (0, 1) holds f2.  Dot products l[f, s]: f0 (2, 0), f1 (0, 1), f2 (2, 1).
FRAMES = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=F64)
SEGMENTS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]], dtype=F64)
LABELS = torch.tensor([[0, 0, 1]])
MASK = torch.tensor([[True, True]])


def test_within_video_by_hand():
    # frame -> segment, L_f = log(e^pos + e^neg) - pos = log(1 + e^(neg - pos)), one negative each:
    #   f0: pos 2, neg 0;  f1: pos 0, neg 1;  f2: pos 1, neg 2
    frames = (log1p_exp(-2) + log1p_exp(1) + log1p_exp(1)) / 3
    # segment -> frame: c0 positives f0, f1 (logits 2, 0), negative f2 (2):
    #   log(mean(e^2, e^0) + e^2) - log(mean(e^2, e^0));  c1: positive f2 (1), negatives f0, f1 (0, 1)
    mean0 = (math.e ** 2 + 1) / 2
    seg0 = math.log(mean0 + math.e ** 2) - math.log(mean0)
    seg1 = math.log(math.e + (1 + math.e) / 2) - 1
    expected = frames + (seg0 + seg1) / 2
    value = within_video_cbva(FRAMES, SEGMENTS, LABELS, MASK)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    terms = CbvaLoss(CbvaConfig(weight=0.1, head="none"))(frame_tokens=FRAMES, clip_tokens=SEGMENTS,
                                            frame_to_clip=LABELS)
    assert terms["cbva"].item() == pytest.approx(0.1 * expected, rel=1e-12)


def test_infonce_by_hand():
    # Fine segments: mean(f0, f1) = (0.5, 0.5) and f2 = (1, 1); both have cosine 1/sqrt2 with
    # c0 = (2, 0) and with c1 = (0, 1).  tau = 0.5: all logits sqrt2, so each L_i = log 2.
    value = infonce_cbva(FRAMES, SEGMENTS, LABELS, MASK, temperature=0.5)
    assert value.item() == pytest.approx(math.log(2), rel=1e-12)
    # Make c1 = (1, 1): fine_1 matches it (cos 1), fine_0 also (cos 1); c0 keeps cos 1/sqrt2.
    segments = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]], dtype=F64)
    a, b = math.sqrt(0.5) / 0.5, 1 / 0.5
    expected = (math.log(math.exp(a) + math.exp(b)) - a + math.log(math.exp(a) + math.exp(b)) - b) / 2
    value = infonce_cbva(FRAMES, segments, LABELS, MASK, temperature=0.5)
    assert value.item() == pytest.approx(expected, rel=1e-12)


def reference_within_video(frames, segments, labels, mask):
    """The authors' per-video loop, exp/mean form (their 1e-8 guards dropped)."""
    total = 0.0
    for b in range(frames.shape[0]):
        valid = mask[b].nonzero().squeeze(1)
        seg = segments[b, valid]
        lab = torch.searchsorted(valid, labels[b])  # labels in the compacted segment list
        pos = lab[:, None] == torch.arange(len(valid))[None, :]  # (Nf, S)
        sim = torch.exp(frames[b] @ seg.detach().t())
        sp = (sim * pos).sum(1) / pos.sum(1)
        sn = (sim * ~pos).sum(1) / (~pos).sum(1).clamp(min=1)
        loss = -torch.log(sp / (sp + sn)).mean()
        sim = torch.exp(frames[b].detach() @ seg.t())
        sp = (sim * pos).sum(0) / pos.sum(0)
        sn = (sim * ~pos).sum(0) / (~pos).sum(0).clamp(min=1)
        total = total + loss - torch.log(sp / (sp + sn)).mean()
    return total / frames.shape[0]


def random_videos(seed=0, b=3, n_frames=10, s=4, h=5):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, n_frames, h, generator=g, dtype=F64)
    segments = torch.randn(b, s, h, generator=g, dtype=F64)
    # Contiguous segments; video 1 has only 3 real segments (one padded), all segments hold frames.
    labels = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 3, 3, 3], [0, 0, 0, 1, 1, 1, 1, 2, 2, 2],
                           [0, 1, 1, 1, 2, 2, 2, 2, 3, 3]])[:b]
    mask = torch.ones(b, s, dtype=torch.bool)
    if b > 1:
        mask[1, 3] = False
    return frames, segments, labels, mask


def test_within_video_matches_loop_reference_and_gradients():
    frames, segments, labels, mask = random_videos()
    frames.requires_grad_(), segments.requires_grad_()
    ours = within_video_cbva(frames, segments, labels, mask)
    ref = reference_within_video(frames, segments, labels, mask)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    g_ours = torch.autograd.grad(ours, (frames, segments))
    g_ref = torch.autograd.grad(ref, (frames, segments))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_padded_segments_change_nothing():
    frames, segments, labels, mask = random_videos()
    garbage = segments.clone()
    garbage[1, 3] = 1e3  # the padded slot's value must not matter
    for fn in (lambda s: within_video_cbva(frames, s, labels, mask),
               lambda s: within_video_cbva(frames, s, labels, mask, weighted=True),
               lambda s: infonce_cbva(frames, s, labels, mask, 0.1),
               lambda s: infonce_cbva(frames, s, labels, mask, 0.1, weighted=True,
                                      cross_video_negatives=True)):
        assert fn(garbage).item() == pytest.approx(fn(segments).item(), rel=1e-12)


def test_other_videos_are_not_negatives():
    frames, segments, labels, mask = random_videos()
    batch = within_video_cbva(frames, segments, labels, mask)
    single = [within_video_cbva(frames[i:i + 1], segments[i:i + 1], labels[i:i + 1], mask[i:i + 1])
              for i in range(3)]
    assert batch.item() == pytest.approx(sum(v.item() for v in single) / 3, rel=1e-12)
    within = infonce_cbva(frames, segments, labels, mask, 0.2)
    single = [infonce_cbva(frames[i:i + 1], segments[i:i + 1], labels[i:i + 1], mask[i:i + 1], 0.2)
              for i in range(3)]
    assert within.item() == pytest.approx(sum(v.item() for v in single) / 3, rel=1e-12)
    across = infonce_cbva(frames, segments, labels, mask, 0.2, cross_video_negatives=True)
    assert across.item() > within.item()  # more negatives can only raise each anchor's loss


def test_detached_sides():
    # frame->segment trains the frames only, segment->frame the segments only: with one segment
    # per video holding every frame neither direction has negatives, so the loss is 0.
    frames, segments, labels, mask = random_videos(b=1)
    frames.requires_grad_(), segments.requires_grad_()
    loss = within_video_cbva(frames, segments, torch.zeros_like(labels), torch.tensor([[True, False, False, False]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # Gradient of the full loss w.r.t. frames equals that of its frame->segment half alone.
    loss = within_video_cbva(frames, segments, labels, mask[:1])
    half = within_video_cbva(frames, segments.detach(), labels, mask[:1])
    g_full = torch.autograd.grad(loss, frames)[0]
    g_half = torch.autograd.grad(half, frames)[0]
    torch.testing.assert_close(g_full, g_half)


def test_gradcheck_float64():
    # within_video detaches one side per direction on purpose, so each direction is checked as a
    # function of both inputs without the detaching (the loop reference above checks the mix).
    frames, segments, labels, mask = random_videos(seed=5, b=2, h=3)
    frames.requires_grad_(), segments.requires_grad_()
    log_w = segment_pair_weights(segments).clamp(min=1e-30).log()
    for direction in (frame_to_segment_loss, segment_to_frame_loss):
        for weights in (None, log_w):
            assert torch.autograd.gradcheck(
                lambda f, s: direction(f, s, labels, mask, weights).sum(), (frames, segments))
    for cross in (False, True):
        assert torch.autograd.gradcheck(
            lambda f, s: infonce_cbva(f, s, labels, mask, 0.3, False, cross), (frames, segments))
        # The weights are detached functions of the segments: check the frames' gradient.
        assert torch.autograd.gradcheck(
            lambda f: infonce_cbva(f, segments, labels, mask, 0.3, True, cross), (frames,))


def test_pair_weights_on_constructed_segments():
    # c0 = (1, 0); c1 = c0 (duplicate); c2 at 60 degrees (cos 1/2); c3 = (-1, 0) (cos -1).
    segs = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.5, math.sqrt(3) / 2], [-1.0, 0.0]]], dtype=F64)
    w = segment_pair_weights(segs)[0]
    torch.testing.assert_close(w[0], torch.tensor([0.0, 0.0, 0.5, 1.0], dtype=F64))
    assert not segment_pair_weights(segs.requires_grad_()).requires_grad


def test_weights_form_drops_a_duplicate_negative():
    # Frame f0 = (1, 0) in segment 0 of three: c0 = (1, 0), c1 = (1, 0) duplicate, c2 = (0, 1).
    # Weights from c0: w01 = 0, w02 = 1. Logits of f0: 1, 1, 0. Negatives' weighted mean over the
    # 2 negatives: (0 * e^1 + 1 * e^0) / 2 = 1/2  ->  L_f0 = log(e + 1/2) - 1.
    frames = torch.tensor([[[1.0, 0.0]]], dtype=F64)
    segs = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=F64)
    labels, mask = torch.tensor([[0]]), torch.ones(1, 3, dtype=torch.bool)
    # segment->frame: only c0 has a frame and it has no negative frame: 0.
    weighted = within_video_cbva(frames, segs, labels, mask, weighted=True)
    assert weighted.item() == pytest.approx(math.log(math.e + 0.5) - 1, rel=1e-12)
    plain = within_video_cbva(frames, segs, labels, mask)
    assert plain.item() == pytest.approx(math.log(math.e + (math.e + 1) / 2) - 1, rel=1e-12)
    # infonce at tau = 1 over fine segment 0 = f0: cosines 1, 1, 0 -> log(e + 0 * e + 1) - 1.
    value = infonce_cbva(frames, segs, labels, mask, 1.0, weighted=True)
    assert value.item() == pytest.approx(math.log(math.e + 1) - 1, rel=1e-12)


def directions(degrees):
    """Unit vectors in the plane at the given angles: a (1, N, 2) batch of tokens."""
    rad = torch.tensor(degrees, dtype=F64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=-1)[None]


def test_transitive_closure_joins_chains():
    # Threshold cos 35 deg: 0-1 and 1-2 (30 deg apart) are edges, 0-2 (60 deg) is not, but they
    # are connected through 1. Token 3 (at 180 deg) is alone: 6 of 12 ordered pairs connected.
    tokens = directions([0, 30, 60, 180])
    assert connectivity_ratio(tokens, None, math.cos(math.radians(35))).item() == pytest.approx(0.5)
    path = torch.zeros(1, 6, 6, dtype=torch.bool)
    for i in range(5):
        path[0, i, i + 1] = path[0, i + 1, i] = True
    assert transitive_closure(path).all()


def test_connectivity_of_block_diagonal_graphs():
    # Components of sizes 4, 2, 1, 1 among 8 tokens: (4*3 + 2*1) / (8*7) = 0.25 of the pairs.
    tokens = torch.cat([directions([0, 0, 0, 0, 90, 90, 180, 270])], dim=0)
    ratio = connectivity_ratio(tokens, None, 0.8)
    assert ratio.item() == pytest.approx(14 / 56)
    # A padded token is left out: 7 valid tokens, components 4, 2, 1 -> 14 / 42.
    mask = torch.tensor([[True] * 7 + [False]])
    assert connectivity_ratio(tokens, mask, 0.8).item() == pytest.approx(14 / 42)


def test_segment_count_rule():
    ratios = torch.tensor([0.0, 0.19, 0.2, 0.39, 0.4, 0.59, 0.6, 0.8, 1.0])
    counts = segment_counts(ratios, (32, 20, 12, 8, 5), 32)
    assert counts.tolist() == [32, 32, 20, 20, 12, 12, 8, 5, 5]
    assert segment_counts(ratios[:2], (32, 20, 12, 8, 5), torch.tensor([16, 16])).tolist() == [16, 16]
    with pytest.raises(ValueError, match="decreasing"):
        segment_counts(ratios, (5, 8), 32)


def test_adaptive_segments_merge_to_counts():
    # Video 0: all 8 tokens alike (ratio 1 -> 2 segments); video 1: 8 orthogonal tokens (ratio 0 -> 8).
    alike = torch.ones(1, 8, 8, dtype=F64) + 0.01 * torch.eye(8, dtype=F64)[None]
    tokens = torch.cat([alike, torch.eye(8, dtype=F64)[None]]).requires_grad_()
    sizes = torch.full((2, 8), 4.0, dtype=F64)
    labels = torch.arange(8).repeat_interleave(4).expand(2, 32)
    segments, counts = adaptive_segments(tokens, sizes, labels, tokens, (8, 6, 4, 3, 2), 0.8)
    assert counts.tolist() == [2, 8]
    assert segments.mask.sum(dim=1).tolist() == [2, 8]
    assert segments.frame_to_segment[0].max() == 1 and segments.sizes[0, :2].sum() == 32
    frames = torch.randn(2, 32, 8, dtype=F64)
    cfg = CbvaConfig(head="none", adaptive=AdaptiveConfig(enabled=True, segment_choices=(8, 6, 4, 3, 2)))
    loss_fn = CbvaLoss(cfg)
    terms = loss_fn(frame_tokens=frames, clip_tokens=tokens, frame_to_clip=labels, clip_sizes=sizes)
    assert loss_fn.last_segment_counts.tolist() == [2, 8]
    terms["cbva"].backward()
    assert tokens.grad.abs().sum() > 0
    # The clip branch's inputs, when the model gives them, build the graph (as in the code).
    swapped = tokens.detach().flip(0)
    loss_fn(frame_tokens=frames, clip_tokens=tokens, frame_to_clip=labels, clip_sizes=sizes,
            merged_inputs=swapped)
    assert loss_fn.last_segment_counts.tolist() == [8, 2]


def small_model_batch():
    from prvr.models import create_model
    cfg = ModelConfig(input_dim=12, hidden=16, heads=2, frame_tokens=16, clip_tokens=8, dropout=0.0)
    torch.manual_seed(0)
    model = create_model(cfg)
    q2v = torch.tensor([0, 0, 1, 2, 2, 2])
    out = model(torch.randn(3, 16, 12), torch.randn(6, 5, 12), torch.ones(6, 5, dtype=torch.bool))
    return model, out, {"query_to_video": q2v, "query_eot": torch.randn(6, 12)}


@pytest.mark.parametrize("tcpl_form,cbva_form,adaptive_form", [
    ("rkd", "within_video", "segments"), ("kl", "infonce", "weights"), ("rkd", "infonce", None)])
def test_factory_builds_the_full_objective(tcpl_form, cbva_form, adaptive_form):
    cfg = LossConfig(tcpl=TcplConfig(enabled=True, form=tcpl_form),
                     cbva=CbvaConfig(enabled=True, form=cbva_form, adaptive=AdaptiveConfig(
                         enabled=adaptive_form is not None, form=adaptive_form or "segments",
                         segment_choices=(8, 6, 4, 3, 2))))
    model, out, batch = small_model_batch()
    loss_fn = create_loss(cfg, hidden=model.cfg.hidden)
    terms = loss_fn(**out, **batch, epoch=0, generator=torch.Generator().manual_seed(0))
    tcpl_terms = {"tcpl_dist", "tcpl_angle"} if tcpl_form == "rkd" else {"tcpl_kl"}
    assert set(terms) == {"nce_clip", "nce_frame", "trip_clip", "trip_frame", "cbva"} | tcpl_terms
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    head = loss_fn.parts[-1].head  # the authors' vproj_clip: trained by CBVA alone
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_factory_defaults_and_bad_settings():
    assert len(create_loss(LossConfig()).parts) == 1
    with pytest.raises(ConfigError, match="loss.cbva.adaptive.enabled"):
        create_loss(LossConfig(cbva=CbvaConfig(adaptive=AdaptiveConfig(enabled=True))))
    with pytest.raises(ConfigError, match="loss.cbva.form"):
        create_loss(LossConfig(cbva=CbvaConfig(form="across")))
    with pytest.raises(ConfigError, match="loss.cbva.adaptive.form"):
        create_loss(LossConfig(cbva=replace(CbvaConfig(), adaptive=AdaptiveConfig(form="x"))))
    with pytest.raises(ConfigError, match="segment_choices"):
        CbvaLoss(CbvaConfig(adaptive=AdaptiveConfig(segment_choices=(5, 8))))
    with pytest.raises(ConfigError, match="loss.cbva.head"):
        create_loss(LossConfig(cbva=CbvaConfig(head="mlp")))
    with pytest.raises(ConfigError, match="hidden size"):  # the head needs the model's token size
        create_loss(LossConfig(cbva=CbvaConfig(enabled=True, head="linear")))
    assert create_loss(LossConfig(cbva=CbvaConfig(enabled=True, head="none"))).parts[-1].head is None
    with pytest.raises(ValueError, match="padded segment"):
        within = CbvaLoss(CbvaConfig(head="none"))
        within(frame_tokens=FRAMES, segment_tokens=SEGMENTS, frame_to_segment=LABELS,
               segment_mask=torch.tensor([[True, False]]))


def test_head_projects_both_branches_before_the_contrast():
    """head "linear" (the authors' vproj_clip): CBVA of head(f) and head(c), one shared layer."""
    torch.manual_seed(0)
    loss = CbvaLoss(CbvaConfig(weight=1.0, head="linear"), hidden=2).double()
    with torch.no_grad():
        loss.head.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 3.0]]))
        loss.head.bias.copy_(torch.tensor([0.1, -0.2]))
    value = loss(frame_tokens=FRAMES, clip_tokens=SEGMENTS, frame_to_clip=LABELS)["cbva"]
    expected = within_video_cbva(loss.head(FRAMES), loss.head(SEGMENTS), LABELS, MASK)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert value.item() != pytest.approx(within_video_cbva(FRAMES, SEGMENTS, LABELS, MASK).item())
