"""Tests of order-preserving token merging and merging to per-video counts
(prvr.models.token_merging): order, sizes, weighted averages, which pair merges, batch
independence, stage counts, and agreement with a plain per-video reference of the authors' rules.
Run: .venv/bin/python -m pytest tests/test_token_merging.py -q
"""
import pytest
import torch

from prvr.models.token_merging import (MergingError, merge_stages, merge_to, merge_to_counts)


def random_feats(b=4, n=32, d=6, seed=0):
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference_round(tokens, sizes, groups, n_merge, pairing):
    """One round for ONE video, written as plainly as possible from the rules in the module doc.

    tokens: list of (D,) tensors; sizes: list of floats; groups: list of frame-index lists.
    """
    if pairing == "adjacent":
        pairs = [(2 * i, 2 * i + 1) for i in range(len(tokens) // 2)]
        sims = [float(tokens[a] @ tokens[b]) for a, b in pairs]
        order = sorted(range(len(pairs)), key=lambda i: -sims[i])  # stable: lower pair first
        chosen = [pairs[i] for i in order[:n_merge]]
    else:
        unit = [t / t.norm() for t in tokens]
        cands = sorted(((float(unit[a] @ unit[b]), a, b) for a in range(0, len(tokens), 2)
                        for b in range(1, len(tokens), 2)), key=lambda c: -c[0])
        chosen, used = [], set()
        for _, a, b in cands:
            if len(chosen) == n_merge:
                break
            if a not in used and b not in used:
                chosen.append((a, b))
                used |= {a, b}
    partner = dict(chosen)
    absorbed = set(partner.values())
    out = ([], [], [])
    for i in range(len(tokens)):
        if i in absorbed:
            continue
        j = partner.get(i)
        if j is None:
            out[0].append(tokens[i]), out[1].append(sizes[i]), out[2].append(groups[i])
        else:
            w = sizes[i] + sizes[j]
            out[0].append((tokens[i] * sizes[i] + tokens[j] * sizes[j]) / w)
            out[1].append(w)
            out[2].append(groups[i] + groups[j])
    return out


def labels_from_groups(groups, n_frames):
    labels = [0] * n_frames
    for k, frames in enumerate(groups):
        for f in frames:
            labels[f] = k
    return labels


def test_order_sizes_and_stage_counts():
    feats = random_feats(b=5, n=32)
    merged = merge_stages(feats, (24, 16, 8))
    assert merged.features.shape == (5, 8, 6) and merged.sizes.shape == (5, 8)
    labels = merged.frame_to_token
    assert labels.shape == (5, 32) and labels.dtype == torch.long
    steps = labels.diff(dim=1)
    assert ((steps == 0) | (steps == 1)).all()  # non-decreasing, no token skipped: contiguous runs
    assert (labels[:, 0] == 0).all() and (labels[:, -1] == 7).all()
    assert torch.equal(merged.sizes.sum(dim=1), torch.full((5,), 32.0, dtype=torch.float64))
    counts = torch.stack([torch.bincount(row, minlength=8) for row in labels]).to(merged.sizes)
    assert torch.equal(merged.sizes, counts)  # a token's size = the frames labelled with it


def test_each_stage_has_exactly_its_count():
    feats = random_feats(b=3, n=128, d=4)
    tokens, sizes, labels = feats, torch.ones(3, 128, dtype=torch.float64), torch.arange(128).expand(3, -1)
    for target in (80, 52, 32):
        tokens, sizes, labels, _ = merge_to(tokens, sizes, labels, None, target)
        assert tokens.shape == (3, target, 4) and sizes.shape == (3, target)
        assert int(labels.max()) == target - 1
    # more than N // 2 merges in one stage: several rounds; odd counts work too
    assert merge_stages(feats, (20,)).features.shape == (3, 20, 4)
    assert merge_stages(feats[:, :31], (17, 5)).sizes.sum(dim=1).tolist() == [31.0] * 3
    # a stage above the current count is a no-op (short videos)
    short = merge_stages(feats[:, :6], (24, 16, 4))
    assert short.features.shape == (3, 4, 4)


def test_merged_features_are_size_weighted_means_of_frames():
    feats = random_feats(b=3, n=32)
    merged = merge_stages(feats, (20, 9, 5))
    for b in range(3):
        for k in range(5):
            frames = feats[b, merged.frame_to_token[b] == k]
            assert torch.allclose(merged.features[b, k], frames.mean(dim=0))
    # explicit sizes: (1 * a + 3 * b) / 4
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 4.0]]])
    out, sizes, _, _ = merge_to(tokens, torch.tensor([[1.0, 3.0]]), torch.tensor([[0, 1, 1, 1]]),
                                None, 1)
    assert torch.allclose(out, torch.tensor([[[1.0, 3.0]]])) and sizes.tolist() == [[4.0]]


def test_most_similar_adjacent_pair_merges_first():
    # pairs (0,1), (2,3), (4,5) have dot products 0, 9, 4; tokens 1 and 2 are identical (dot 100)
    # but (1, 2) is not a candidate pair
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 10.0], [0.0, 10.0], [0.0, 0.9],
                            [2.0, 0.0], [2.0, 0.0]]])
    sizes, labels = torch.ones(1, 6), torch.arange(6)[None]
    one = merge_to(tokens, sizes, labels, None, 5)
    assert one[2].tolist() == [[0, 1, 2, 2, 3, 4]]  # (2, 3) merged
    two = merge_to(tokens, sizes, labels, None, 4)
    assert two[2].tolist() == [[0, 1, 2, 2, 3, 3]]  # then (4, 5) (dot 4), not (0, 1) (dot 0)
    assert torch.allclose(two[0][0, 2], torch.tensor([0.0, 5.45]))


def test_batch_equals_one_video_at_a_time():
    feats = random_feats(b=6, n=128, d=8, seed=3)
    together = merge_stages(feats, (80, 52, 32))
    for b in range(6):
        alone = merge_stages(feats[b:b + 1], (80, 52, 32))
        assert torch.allclose(together.features[b], alone.features[0])
        assert torch.equal(together.sizes[b], alone.sizes[0])
        assert torch.equal(together.frame_to_token[b], alone.frame_to_token[0])


@pytest.mark.parametrize("pairing, n, target", [("adjacent", 32, 20), ("adjacent", 20, 12),
                                                ("bipartite", 32, 20), ("bipartite", 12, 8)])
def test_round_matches_per_video_reference(pairing, n, target):
    feats = random_feats(b=4, n=n, d=5, seed=n)
    sizes = torch.randint(1, 5, (4, n)).double()
    labels = torch.arange(n).repeat_interleave(2).expand(4, -1)  # two frames per token
    out_tokens, out_sizes, out_labels, _ = merge_to(feats, sizes, labels, None, target, pairing)
    for b in range(4):
        ref = reference_round(list(feats[b]), sizes[b].tolist(),
                              [[2 * i, 2 * i + 1] for i in range(n)], n - target, pairing)
        assert torch.allclose(out_tokens[b], torch.stack(ref[0]))
        assert out_sizes[b].tolist() == ref[1]
        assert out_labels[b].tolist() == labels_from_groups(ref[2], 2 * n)


def test_bipartite_merges_non_neighbours_and_metric_decides():
    # token 0 (A side) matches token 3 (B side) best; the merged token takes position 0
    metric = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2], [1.0, 0.01]]])
    values = torch.arange(4.0).view(1, 4, 1)  # merged values are NOT used for the similarity
    sizes, labels = torch.ones(1, 4), torch.arange(4)[None]
    tokens, new_sizes, new_labels, new_metric = merge_to(values, sizes, labels, metric, 3,
                                                         "bipartite")
    assert new_labels.tolist() == [[0, 1, 2, 0]]  # order not kept
    assert tokens[0, :, 0].tolist() == [1.5, 1.0, 2.0] and new_sizes.tolist() == [[2, 1, 1]]
    assert torch.allclose(new_metric[0, 0], torch.tensor([1.0, 0.005]))


def test_merge_to_counts_selects_each_videos_level():
    feats = random_feats(b=4, n=16, d=5, seed=7)
    sizes = torch.ones(4, 16, dtype=torch.float64)
    labels = torch.arange(16).repeat_interleave(3).expand(4, -1)  # 48 frames, 3 per token
    counts = torch.tensor([16, 6, 10, 3])
    seg = merge_to_counts(feats, sizes, labels, counts, (10, 6, 3))
    assert seg.tokens.shape == (4, 16, 5) and seg.mask.sum(dim=1).tolist() == [16, 6, 10, 3]
    assert torch.equal(seg.sizes.sum(dim=1), torch.full((4,), 16.0, dtype=torch.float64))
    assert (seg.tokens[~seg.mask] == 0).all() and (seg.sizes[~seg.mask] == 0).all()
    for b, count in enumerate(counts.tolist()):
        level = (feats[b:b + 1], sizes[b:b + 1], labels[b:b + 1], None)
        for target in (10, 6, 3):
            if target < count:
                break
            level = merge_to(*level, target)
        assert torch.allclose(seg.tokens[b, :count], level[0][0])
        assert torch.equal(seg.frame_to_segment[b], level[2][0])
        assert int(seg.frame_to_segment[b].max()) == count - 1


def test_merge_to_counts_hand_case_with_metric_and_gradient():
    # 4 tokens, metric says (0,1) are alike and (2,3) are not: count 3 merges (0,1) only
    metric = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]]).repeat(2, 1, 1)
    tokens = torch.tensor([[[2.0], [4.0], [6.0], [8.0]]]).repeat(2, 1, 1).requires_grad_()
    sizes = torch.tensor([[1.0, 3.0, 1.0, 1.0]]).repeat(2, 1)
    labels = torch.tensor([[0, 1, 1, 1, 2, 3]]).repeat(2, 1)
    seg = merge_to_counts(tokens, sizes, labels, torch.tensor([3, 4]), (3, 2), metric=metric)
    assert seg.tokens[0, :, 0].tolist() == [3.5, 6.0, 8.0, 0.0]  # (1*2 + 3*4) / 4
    assert seg.mask.tolist() == [[True, True, True, False], [True] * 4]
    assert seg.frame_to_segment.tolist() == [[0, 0, 0, 0, 1, 2], [0, 1, 1, 1, 2, 3]]
    seg.tokens[seg.mask].sum().backward()
    assert torch.allclose(tokens.grad[0, :, 0], torch.tensor([0.25, 0.75, 1.0, 1.0]))


def test_merge_to_counts_rejects_bad_counts_and_stages():
    feats = random_feats(b=2, n=8)
    sizes, labels = torch.ones(2, 8, dtype=torch.float64), torch.arange(8).expand(2, -1)
    with pytest.raises(MergingError, match="not in the merge chain"):
        merge_to_counts(feats, sizes, labels, torch.tensor([8, 5]), (6, 4))
    with pytest.raises(MergingError, match="strictly decrease"):
        merge_to_counts(feats, sizes, labels, torch.tensor([8, 4]), (4, 6))
    with pytest.raises(MergingError, match="below 8"):
        merge_to_counts(feats, sizes, labels, torch.tensor([8, 8]), (8, 4))
    with pytest.raises(MergingError, match="bipartite"):
        merge_to_counts(feats, sizes, labels, torch.tensor([8, 2]), (2,), pairing="bipartite")
    with pytest.raises(MergingError, match="pairing"):
        merge_to(feats, sizes, labels, None, 4, "nearest")


def test_repeated_frames_tie_and_the_lower_pair_merges_first():
    """A short video resampled to many tokens repeats its frames, so pair similarities tie exactly
    (below about 43 frames at 128 tokens). The rule here is stable: of equal pairs the lower one merges
    first. The authors' CPU argsort is not stable, so their partition of such a video is unspecified
    (docs/fidelity.md): this pins ours."""
    a, b, c = torch.eye(3)
    frames = torch.stack([a, a, a, b, b, b, c, c])[None]  # (1, 8, 3): pairs (a,a) (a,b) (b,b) (c,c)
    merged = merge_stages(frames, (6,))  # merge 2 of the 3 pairs tied at similarity 1
    assert merged.frame_to_token.tolist() == [[0, 0, 1, 2, 3, 3, 4, 5]]  # pairs 0 and 2, not 3
    assert merged.sizes.tolist() == [[2, 1, 1, 2, 1, 1]]
