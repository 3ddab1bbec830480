"""Tests of the semantic-collapse diagnostics (prvr.evaluation.collapse): hand-computed tiny cases,
ties, skipping rules, bad input and slow python-loop references; chunked and unchunked runs agree.
Run: .venv/bin/python -m pytest tests/test_collapse.py -q
"""
import math

import numpy as np
import pytest

from prvr.evaluation import collapse
from prvr.evaluation.collapse import (cosine_matrix, localization, moment_contrast, relation_percentile,
                                      structure_correlation)

SQRT2 = math.sqrt(2.0)


def loop_cos(u, v):
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


# ---------------------------------------------------------------- cosine_matrix
def test_cosine_matrix_hand_case():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    expected = [[1.0, 1 / SQRT2, -1.0],   # parallel, 45 degrees, opposite
                [0.0, 1 / SQRT2, 0.0]]    # orthogonal, 45 degrees, orthogonal
    np.testing.assert_allclose(cosine_matrix(a, b), expected, atol=1e-15)


def test_cosine_matrix_zero_row_and_shape_errors():
    with pytest.raises(ValueError, match="^a: zero-norm vector at row 1"):
        cosine_matrix([[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="^b: zero-norm"):
        cosine_matrix([[1.0, 0.0]], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="^b: expected 2 columns"):
        cosine_matrix([[1.0, 0.0]], [[1.0, 0.0, 0.0]])


# ---------------------------------------------------------------- moment_contrast
HAND_TOKENS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]])  # (4, 2)
HAND_INSIDE = np.array([True, True, True, False])
# within: pairs (0,1)=0, (0,2)=1/sqrt2, (1,2)=1/sqrt2 -> sqrt2/3; between: (0,3)=-1, (1,3)=0, (2,3)=-1/sqrt2
HAND_WITHIN = SQRT2 / 3
HAND_BETWEEN = (-1.0 - 1 / SQRT2) / 3


def test_moment_contrast_hand_case():
    out = moment_contrast(HAND_TOKENS[None], HAND_INSIDE[None])
    assert out["within"] == pytest.approx(HAND_WITHIN, abs=1e-14)
    assert out["between"] == pytest.approx(HAND_BETWEEN, abs=1e-14)
    assert out["contrast"] == pytest.approx(HAND_WITHIN - HAND_BETWEEN, abs=1e-14)
    assert out["n_queries"] == 1.0


def test_moment_contrast_skips_queries_without_two_inside_or_one_outside():
    garbage = np.array([[5.0, -1.0], [-3.0, 2.0], [0.5, 9.0], [1.0, 1.0]])  # would change the means
    tokens = np.stack([garbage, HAND_TOKENS, garbage])  # (3, 4, 2)
    inside = np.array([[True, False, False, False],    # one inside token: skipped
                       HAND_INSIDE,
                       [True, True, True, True]])      # no outside token: skipped
    out = moment_contrast(tokens, inside)
    assert out["n_queries"] == 1.0
    assert out["within"] == pytest.approx(HAND_WITHIN, abs=1e-14)
    assert out["between"] == pytest.approx(HAND_BETWEEN, abs=1e-14)


def test_moment_contrast_no_query_qualifies_gives_nan():
    tokens = np.ones((2, 3, 4))
    out = moment_contrast(tokens, np.array([[True, False, False], [True, True, True]]))
    assert out["n_queries"] == 0.0
    assert all(math.isnan(out[key]) for key in ("within", "between", "contrast"))


def loop_moment_contrast(tokens, inside):
    within, between = [], []
    for q in range(len(tokens)):
        ins = [i for i in range(tokens.shape[1]) if inside[q, i]]
        outs = [k for k in range(tokens.shape[1]) if not inside[q, k]]
        if len(ins) < 2 or not outs:
            continue
        within.append(np.mean([loop_cos(tokens[q, i], tokens[q, j]) for i in ins for j in ins if i != j]))
        between.append(np.mean([loop_cos(tokens[q, i], tokens[q, k]) for i in ins for k in outs]))
    within, between = np.array(within), np.array(between)
    return {"within": within.mean(), "between": between.mean(), "contrast": (within - between).mean(),
            "n_queries": float(len(within))}


@pytest.mark.parametrize("chunk_bytes", [collapse._CHUNK_BYTES, 1, 2 * 8 * 9 * 5 * 2])
def test_moment_contrast_matches_loop_reference(monkeypatch, chunk_bytes):
    monkeypatch.setattr(collapse, "_CHUNK_BYTES", chunk_bytes)  # 1 query or 2 queries per chunk
    rng = np.random.default_rng(3)
    tokens = rng.normal(size=(7, 9, 5))
    inside = rng.random((7, 9)) < 0.5
    inside[0] = [True] * 9  # make sure the skipping rule is exercised
    expected = loop_moment_contrast(tokens, inside)
    out = moment_contrast(tokens, inside)
    assert expected["n_queries"] >= 4
    assert out.keys() == expected.keys()
    for key in expected:
        assert out[key] == pytest.approx(expected[key], abs=1e-12)


def test_moment_contrast_bad_input():
    tokens = np.ones((3, 4, 2))
    tokens[2, 1] = 0.0
    inside = np.array([[True, True, False, False]] * 3)
    with pytest.raises(ValueError, match=r"^tokens: zero-norm vector at row \(2, 1\)"):
        moment_contrast(tokens, inside)
    tokens[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^tokens: NaN or inf at row \(2, 1\)"):
        moment_contrast(tokens, inside)
    with pytest.raises(ValueError, match="^inside: expected shape"):
        moment_contrast(tokens, inside[:, :3])
    with pytest.raises(ValueError, match="^tokens: expected a 3-D"):
        moment_contrast(tokens[0], inside)


# ---------------------------------------------------------------- localization
def test_localization_hand_case_and_chance():
    scores = np.array([[0.1, 0.9, 0.3],    # top token 1 overlaps     -> hit 1
                       [0.5, 0.2, 0.1],    # top token 0 does not      -> hit 0
                       [0.4, 0.3, 0.2]])   # no overlapping token      -> hit 0, still counted
    overlap = np.array([[False, True, False], [False, True, True], [False, False, False]])
    out = localization(scores, overlap)
    assert out["hit_rate"] == pytest.approx(1 / 3)
    assert out["chance"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


def test_localization_ties_count_fractionally():
    scores = np.array([[0.7, 0.7, 0.1, 0.0],     # two maxima, one overlaps      -> 1/2
                       [0.2, 0.2, 0.2, 0.1]])    # three maxima, two overlap     -> 2/3
    overlap = np.array([[True, False, False, True], [True, False, True, True]])
    out = localization(scores, overlap)
    assert out["hit_rate"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert out["chance"] == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_localization_nan_names_the_row():
    scores = np.array([[0.1, 0.2], [0.3, np.nan]])
    with pytest.raises(ValueError, match="^scores: NaN in row 1$"):
        localization(scores, np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="^overlap: expected shape"):
        localization(scores[:1], np.ones((2, 2), dtype=bool))


# ---------------------------------------------------------------- relation_percentile
def test_relation_percentile_hand_case():
    sim = np.array([[1.0, 0.8, 0.2, 0.5],
                    [0.3, 1.0, 0.9, 0.1],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.1, 0.2, 0.3, 1.0]])
    related = np.zeros((4, 4), dtype=bool)
    related[0, 1] = True            # others 0.2, 0.5 both below 0.8            -> 1
    related[1, [0, 3]] = True       # j=0: 0.9 above, 0.1 below -> 1/2; j=3: 0  -> 1/4
    related[2, 2] = True            # diagonal only: anchor 2 is not counted
    out = relation_percentile(sim, related)
    assert out == {"percentile": pytest.approx((1.0 + 0.25) / 2), "n_anchors": 2.0}


def test_relation_percentile_ties_count_half_and_diagonal_is_excluded():
    sim = np.array([[1.0, 0.5, 0.5, 0.2],     # j=1: k=2 tied (half), k=3 below   -> 3/4
                    [0.5, 0.5, 0.1, 0.9],     # j=0: diagonal 0.5 is not a tie, k=2 below, k=3 above -> 1/2
                    [0.0, 0.0, 0.0, 0.0],
                    [0.0, 0.0, 0.0, 0.0]])
    related = np.zeros((4, 4), dtype=bool)
    related[0, 1] = related[1, 0] = True
    related[1, 1] = True                      # ignored
    out = relation_percentile(sim, related)
    assert out["percentile"] == pytest.approx((0.75 + 0.5) / 2)
    assert out["n_anchors"] == 2.0


def test_relation_percentile_without_anchors():
    out = relation_percentile(np.zeros((3, 3)), np.eye(3, dtype=bool))
    assert math.isnan(out["percentile"]) and out["n_anchors"] == 0.0


def loop_relation_percentile(sim, related):
    n = len(sim)
    per_anchor = []
    for q in range(n):
        values = []
        for j in range(n):
            if j == q or not related[q, j]:
                continue
            others = [sim[q, k] for k in range(n) if k not in (q, j)]
            values.append((sum(s < sim[q, j] for s in others) + 0.5 * sum(s == sim[q, j] for s in others))
                          / (n - 2))
        if values:
            per_anchor.append(np.mean(values))
    return np.mean(per_anchor), float(len(per_anchor))


def test_relation_percentile_matches_loop_reference_and_chunking(monkeypatch):
    rng = np.random.default_rng(7)
    sim = np.round(rng.normal(size=(13, 13)), 1)  # rounding makes many ties
    related = rng.random((13, 13)) < 0.2
    related[5] = False
    expected, n_anchors = loop_relation_percentile(sim, related)
    whole = relation_percentile(sim, related)
    assert whole["percentile"] == pytest.approx(expected, abs=1e-12)
    assert whole["n_anchors"] == n_anchors
    monkeypatch.setattr(collapse, "_CHUNK_BYTES", 12 * 8 * 13 * 3)  # 3 rows per chunk
    assert relation_percentile(sim, related) == whole


@pytest.mark.parametrize("density", [0.05, 0.2, 0.9])
def test_relation_percentile_by_comparison_equals_by_sorting(monkeypatch, density):
    """A few related items per anchor are counted by comparing them with their anchor's row, many by
    sorting the rows: the same integers, so the same percentile to the bit; ties included."""
    rng = np.random.default_rng(8)
    sim = np.round(rng.normal(size=(40, 40)), 1)
    related = rng.random((40, 40)) < density
    monkeypatch.setattr(collapse, "SPARSE_RELATED", 40)
    compared = relation_percentile(sim, related)
    monkeypatch.setattr(collapse, "SPARSE_RELATED", -1)
    assert relation_percentile(sim, related) == compared
    assert compared["percentile"] == pytest.approx(loop_relation_percentile(sim, related)[0], abs=1e-12)


def test_relation_percentile_bad_input():
    with pytest.raises(ValueError, match="^sim: expected a square"):
        relation_percentile(np.zeros((2, 2)), np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="^sim: NaN or inf in row 2"):
        relation_percentile(np.diag([0.0, 0.0, np.nan]), np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="^related: expected a boolean"):
        relation_percentile(np.zeros((3, 3)), np.full((3, 3), 0.5))


# ---------------------------------------------------------------- structure_correlation
def test_structure_correlation_identity_and_monotone_transform():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(30, 6))
    assert structure_correlation(student, student) == pytest.approx(1.0, abs=1e-12)
    assert structure_correlation(student, 2.5 * student) == pytest.approx(1.0, abs=1e-12)
    rotation = np.linalg.qr(rng.normal(size=(10, 10)))[0][:6]  # (6, 10) orthonormal rows keep cosines
    assert structure_correlation(student, student @ rotation) == pytest.approx(1.0, abs=1e-12)
    assert structure_correlation(student, -student[:, ::-1] * [1, 2, 3, 4, 5, 6]) < 0.99


def loop_spearman(x, y):
    """Average ranks by counting (smaller + half of the other equal values), then Pearson."""
    def ranks(v):
        return np.array([np.sum(v < a) + 0.5 * (np.sum(v == a) - 1) for a in v])
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def upper_cosines(x):
    return cosine_matrix(x, x)[np.triu_indices(len(x), k=1)]


def test_structure_correlation_matches_references_with_ties():
    rng = np.random.default_rng(1)
    student = rng.integers(1, 4, size=(15, 3)).astype(float)  # small integer vectors: many tied cosines
    teacher = rng.normal(size=(15, 5))
    expected = loop_spearman(upper_cosines(student), upper_cosines(teacher))
    assert structure_correlation(student, teacher) == pytest.approx(expected, abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    scipy_value = stats.spearmanr(upper_cosines(student), upper_cosines(teacher))[0]
    assert structure_correlation(student, teacher) == pytest.approx(scipy_value, abs=1e-12)


def test_structure_correlation_subset_is_deterministic():
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(50, 4)), rng.normal(size=(50, 7))
    first = structure_correlation(student, teacher, max_items=20, seed=5)
    assert structure_correlation(student, teacher, max_items=20, seed=5) == first
    rows = np.sort(np.random.default_rng(5).choice(50, 20, replace=False))
    assert first == pytest.approx(structure_correlation(student[rows], teacher[rows]), abs=1e-15)
    assert structure_correlation(student, teacher, max_items=20, seed=6) != first


def test_structure_correlation_bad_input():
    with pytest.raises(ValueError, match="^student: expected at least 3 rows"):
        structure_correlation(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="^teacher: expected 4 rows"):
        structure_correlation(np.eye(4), np.eye(3))
