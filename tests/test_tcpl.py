"""Tests of TCPL (prvr.losses.tcpl): hand-worked triangles, the Gram/chunked angle term against the
authors' (N, N, D) formulation, gradients, memory held for backward, the KL reading, the module.
Run: .venv/bin/python -m pytest tests/test_tcpl.py -q
"""
import math

import pytest
import torch
import torch.nn.functional as F

from prvr.config import ConfigError
from prvr.config_losses import TcplConfig
from prvr.losses.tcpl import (TcplLoss, naive_rkd_angle_loss, rkd_angle_loss, rkd_distance_loss,
                              tcpl_kl_loss)

# Student: right isosceles triangle; teacher: equilateral triangle (both in the plane).
STUDENT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
TEACHER = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]], dtype=torch.float64)


def smooth_l1(d):
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def test_distance_term_by_hand():
    # Student distances 1, 1, sqrt2; their mean over the 6 off-diagonal entries is m = (2 + sqrt2)/3.
    # Teacher distances all 1 (mean 1). Off-diagonal differences: 1/m - 1 (4 entries), sqrt2/m - 1 (2).
    m = (2 + math.sqrt(2)) / 3
    expected = (4 * smooth_l1(1 / m - 1) + 2 * smooth_l1(math.sqrt(2) / m - 1)) / 9  # diagonal: 0
    assert rkd_distance_loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0098125, abs=1e-6)


def test_angle_term_by_hand():
    # Cosines at each anchor between the two other points: student 0 (right angle at 0) and
    # 1/sqrt2 at 1 and 2; teacher 1/2 everywhere. Entries (a, j, k) with j == k != a are 1 for both,
    # entries with j == a or k == a are 0 for both, so only the 2 ordered pairs per anchor count.
    expected = (2 * smooth_l1(0 - 0.5) + 4 * smooth_l1(1 / math.sqrt(2) - 0.5)) / 27
    for chunk in (1, 2, 3):
        assert rkd_angle_loss(STUDENT, TEACHER, chunk).item() == pytest.approx(expected, rel=1e-12)
    assert naive_rkd_angle_loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-12)


def test_similar_shapes_cost_nothing():
    # Distances and angles are invariant to scale, rotation and translation of either set.
    rotation = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    moved = 3.0 * STUDENT @ rotation + torch.tensor([5.0, -2.0], dtype=torch.float64)
    assert rkd_distance_loss(moved, STUDENT).item() == pytest.approx(0.0, abs=1e-12)
    assert rkd_angle_loss(moved, STUDENT).item() == pytest.approx(0.0, abs=1e-12)


def random_case(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n, 6, generator=g, dtype=dtype)
    teacher = torch.randn(n, 9, generator=g, dtype=dtype)
    teacher[4] = teacher[7]  # duplicate captions: coincident teacher points (angle 0 at them)
    return student.requires_grad_(), teacher


@pytest.mark.parametrize("n, dtype, seed, chunk, rel, rtol, atol", [
    *[(19, torch.float64, 0, chunk, 1e-12, 1e-9, 1e-14) for chunk in (1, 4, 7, 64)],
    (40, torch.float32, 3, 8, 1e-5, 1e-3, 1e-7),
])
def test_chunked_angle_equals_naive(n, dtype, seed, chunk, rel, rtol, atol):
    student, teacher = random_case(n, dtype, seed=seed)
    fast = rkd_angle_loss(student, teacher, chunk)
    (grad_fast,) = torch.autograd.grad(fast, student)
    naive = naive_rkd_angle_loss(student, teacher)
    (grad_naive,) = torch.autograd.grad(naive, student)
    assert fast.item() == pytest.approx(naive.item(), rel=rel)
    torch.testing.assert_close(grad_fast, grad_naive, rtol=rtol, atol=atol)


def test_coincident_student_points():
    # The code's normalisation of a zero difference gives cosine 0 and a ~1/eps gradient; here the
    # value is the same and the coincident pair simply gives no gradient through its angle.
    student, teacher = random_case(12, torch.float64, seed=4)
    with torch.no_grad():
        student[2] = student[9]
    fast = rkd_angle_loss(student, teacher, 5)
    assert fast.item() == pytest.approx(naive_rkd_angle_loss(student, teacher).item(), rel=1e-12)
    (grad,) = torch.autograd.grad(fast, student)
    assert torch.isfinite(grad).all() and grad.abs().max() < 1.0


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    student = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(7, 5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: rkd_angle_loss(x, teacher, 3), (student,))
    assert torch.autograd.gradcheck(lambda x: rkd_distance_loss(x, teacher), (student,))
    assert torch.autograd.gradcheck(lambda x: tcpl_kl_loss(x, teacher, 0.5), (student,))


def test_backward_keeps_no_cubic_tensor():
    # Everything autograd keeps for backward is O(N^2) or O(N D), never N^2 D or N^3.
    n, d = 48, 16
    student = torch.randn(n, d, requires_grad=True)
    teacher = torch.randn(n, 24)
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        loss = rkd_angle_loss(student, teacher, chunk=4)
    loss.backward()
    assert sizes and max(sizes) <= n * n
    assert torch.isfinite(student.grad).all()


def test_kl_by_hand():
    # tau = 1. Teacher cosines off the diagonal: t0.t1 = 0, t0.t2 = 1, t1.t2 = 0; student all 0.
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    student = torch.eye(3, dtype=torch.float64)
    e = math.e
    p = [1 / (1 + e), e / (1 + e)]  # rows 0 and 2 of the teacher; row 1 is uniform like the student
    row = sum(pi * math.log(pi / 0.5) for pi in p)
    assert tcpl_kl_loss(student, teacher, 1.0).item() == pytest.approx(2 * row / 3, rel=1e-12)
    assert tcpl_kl_loss(teacher, teacher, 0.1).item() == pytest.approx(0.0, abs=1e-12)


def test_module_terms_weights_and_teacher_normalisation():
    g = torch.Generator().manual_seed(2)
    query = torch.randn(10, 8, generator=g, requires_grad=True)
    eot = torch.randn(10, 12, generator=g)
    loss = TcplLoss(TcplConfig(form="rkd", distance_weight=2.0, angle_weight=3.0))
    terms = loss(query=query, query_eot=eot, frame_tokens=None)
    unit = F.normalize(eot, dim=-1)
    assert set(terms) == {"tcpl_dist", "tcpl_angle"}
    assert terms["tcpl_dist"].item() == pytest.approx(2 * rkd_distance_loss(query, unit).item(), rel=1e-5)
    assert terms["tcpl_angle"].item() == pytest.approx(3 * rkd_angle_loss(query, unit).item(), rel=1e-5)
    # Rescaling a caption's teacher vector changes nothing: the teacher is L2-normalised first.
    rescaled = eot * torch.arange(1, 11, dtype=torch.float32)[:, None]
    again = loss(query=query, query_eot=rescaled)
    assert again["tcpl_angle"].item() == pytest.approx(terms["tcpl_angle"].item(), rel=1e-5)
    sum(terms.values()).backward()
    assert query.grad.abs().sum() > 0
    kl = TcplLoss(TcplConfig(form="kl", kl_weight=0.5, temperature=0.2))(query=query, query_eot=eot)
    assert set(kl) == {"tcpl_kl"}
    assert kl["tcpl_kl"].item() == pytest.approx(0.5 * tcpl_kl_loss(query, eot, 0.2).item(), rel=1e-5)


def test_tiny_batches_and_no_grad():
    one = torch.randn(1, 4, requires_grad=True)
    assert rkd_distance_loss(one, torch.randn(1, 3)).item() == 0.0
    assert rkd_angle_loss(one, torch.randn(1, 3)).item() == 0.0
    assert tcpl_kl_loss(one, torch.randn(1, 3), 0.1).item() == 0.0
    with torch.no_grad():
        value = rkd_angle_loss(torch.randn(9, 4), torch.randn(9, 3), 2)
    assert torch.isfinite(value)


def test_bad_settings_and_inputs():
    with pytest.raises(ConfigError, match="loss.tcpl.form"):
        TcplLoss(TcplConfig(form="cosine"))
    with pytest.raises(ConfigError, match="loss.tcpl.angle_chunk"):
        TcplLoss(TcplConfig(angle_chunk=0))
    with pytest.raises(ConfigError, match="loss.tcpl.temperature"):
        TcplLoss(TcplConfig(form="kl", temperature=0.0))
    with pytest.raises(ValueError, match="query_eot"):
        TcplLoss(TcplConfig())(query=torch.randn(3, 4))
    with pytest.raises(ValueError, match="query_eot"):
        TcplLoss(TcplConfig())(query=torch.randn(3, 4), query_eot=torch.randn(2, 4))
