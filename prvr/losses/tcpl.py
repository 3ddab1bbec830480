"""Text Correlation Preservation Learning (TCPL): keep the relations between the captions of a batch
that the frozen CLIP text encoder gives (teacher) in the model's query embeddings (student).

Notation: Q captions of the batch; student x_i = the model's `query` (Q, H); teacher t_i = the
frozen CLIP end-of-text embedding `query_eot` (Q, D), no gradient. Two readings (`TcplConfig.form`):

"rkd" (authors' code, relational knowledge distillation; smooth-L1 h(d) = d^2/2 if |d| < 1 else |d| - 1/2):
    d_ij = ||x_i - x_j|| / mean_{k != l} ||x_k - x_l||,   same for the teacher's d^t_ij      (Q, Q)
    L_dist  = mean_{i, j} h(d_ij - d^t_ij)                          (mean over all Q^2 entries)
    c_ajk = < (x_j - x_a) / ||x_j - x_a||, (x_k - x_a) / ||x_k - x_a|| >  (cos of the angle at a;
            0 when j = a or k = a, as the code's normalisation of a zero vector gives)   (Q, Q, Q)
    L_angle = mean_{a, j, k} h(c_ajk - c^t_ajk)                     (mean over all Q^3 entries)
    terms: tcpl_dist = distance_weight * L_dist, tcpl_angle = angle_weight * L_angle.
  As in the authors' data pipeline, the teacher vectors are L2-normalised first (their loader
  normalises every CLIP text token); the student is not. Only the student gets gradients.

"kl" (seed summary): row-softmaxed cosine similarities at temperature tau, the diagonal excluded
(every self-similarity is 1 for both models; kept, it would dominate each row at small tau and
carry no information about the other captions):
    P_i = softmax_{j != i}(cos(t_i, t_j) / tau),  S_i = softmax_{j != i}(cos(x_i, x_j) / tau)
    L_kl = mean_i KL(P_i || S_i);   term tcpl_kl = kl_weight * L_kl.

The angle term never builds a (Q, Q, D) or (Q, Q, Q) tensor: with the Gram matrix G = X X^T,
    <x_j - x_a, x_k - x_a> = G_jk - G_aj - G_ak + G_aa,  ||x_j - x_a||^2 = G_aa + G_jj - 2 G_aj,
so anchor a's (Q, Q) cosine matrix is G rescaled plus a rank-2 term. `AngleLoss` walks over blocks
of `chunk` anchors; its forward pass also accumulates the gradient with respect to G (O(Q^2)
memory), so the backward pass is a multiplication. Extra memory: about 4 * chunk * Q^2 floats.
Vectors are centred first (angles and distances do not change) to limit cancellation in the Gram
form; pairs whose squared distance is below 64 machine epsilons of their squared norms are treated
as coincident (angle 0, like the code's normalisation of an exact zero difference).

    loss = TcplLoss(TcplConfig(form="rkd"))
    terms = loss(query=out["query"], query_eot=batch["query_eot"])   # {"tcpl_dist", "tcpl_angle"}
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config import ConfigError
from prvr.config_losses import TcplConfig

FORMS = ("rkd", "kl")


def _gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the centred rows of (N, D) x: (N, N)."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred @ centred.t()


def gram_distances(gram: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(N, N) Gram -> Euclidean distances, squared ones clamped at eps, zero diagonal (the code's pdist)."""
    diag = gram.diagonal()
    dist = (diag[:, None] + diag[None, :] - 2 * gram).clamp(min=eps).sqrt()
    return dist * (1 - torch.eye(len(gram), dtype=gram.dtype, device=gram.device))


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_dist of the module docstring; student (N, H), teacher (N, D) -> scalar."""
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0
    off_diagonal = n * (n - 1)
    with torch.no_grad():
        t_dist = gram_distances(_gram(teacher))
        t_dist = t_dist / (t_dist.sum() / off_diagonal)
    s_dist = gram_distances(_gram(student))
    s_dist = s_dist / (s_dist.sum() / off_diagonal)
    return F.smooth_l1_loss(s_dist, t_dist, reduction="mean")


def _anchor_factors(gram: torch.Tensor):
    """Per-anchor factors of the cosines: c_a = u_a u_a^T * G - b_a u_a^T - u_a b_a^T (row a = anchor).

    u_aj = 1 / ||x_j - x_a|| (0 when j = a or the two points coincide), b_aj = u_aj (G_aj - G_aa / 2).
    """
    diag = gram.diagonal()
    scale = diag[:, None] + diag[None, :]
    squared = (scale - 2 * gram).clamp(min=0)  # (N, N) squared distances
    distinct = squared > 64 * torch.finfo(gram.dtype).eps * scale
    distinct.fill_diagonal_(False)
    inverse = torch.where(distinct, squared.clamp(min=torch.finfo(gram.dtype).tiny).rsqrt(),
                          torch.zeros_like(squared))
    return inverse, inverse * (gram - diag[:, None] / 2)


def _block_cosines(gram: torch.Tensor, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines for a block of c anchors: u, b (c, N) -> (c, N, N), in place on one new buffer."""
    cos = gram * u[:, None, :]  # (c, N, N): u_ak G_jk
    cos.sub_(b[:, None, :]).mul_(u[:, :, None])  # u_aj (u_ak G_jk - b_ak)
    return cos.baddbmm_(b[:, :, None], u[:, None, :], alpha=-1)  # - b_aj u_ak


class AngleLoss(torch.autograd.Function):
    """L_angle from the student's and the teacher's (centred) Gram matrices, chunked over anchors.

    forward(gram_student (N, N), gram_teacher (N, N), chunk) -> scalar. Gradient only for the
    student's Gram, computed during forward (see `_gram_gradient`) when it requires grad.
    """

    @staticmethod
    def forward(ctx, gram_s, gram_t, chunk: int):
        n = gram_s.shape[0]
        u_s, b_s = _anchor_factors(gram_s)
        u_t, b_t = _anchor_factors(gram_t)
        need_grad = ctx.needs_input_grad[0]
        row_dot = torch.zeros_like(gram_s)  # sum_k r_ajk c_ajk
        row_sum = torch.zeros_like(gram_s)  # sum_k p_ajk,   p_ajk = r_ajk u_aj u_ak
        anchor_sum = torch.zeros_like(gram_s)  # sum_a p_ajk
        total = 0.0
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            cos_s = _block_cosines(gram_s, u_s[rows], b_s[rows])  # (c, N, N)
            diff = _block_cosines(gram_t, u_t[rows], b_t[rows])
            diff = torch.sub(cos_s, diff, out=diff)  # student - teacher
            slope = diff.clamp(-1, 1)  # smooth-L1 derivative r; h(d) = r d - r^2 / 2
            flat = slope.view(-1)
            total += float(flat.dot(diff.view(-1))) - 0.5 * float(flat.dot(flat))
            if need_grad:
                _accumulate(slope, cos_s, u_s[rows], rows, row_dot, row_sum, anchor_sum)
        count = float(n) ** 3
        if need_grad:
            grad = _gram_gradient(u_s, row_dot, row_sum, anchor_sum) / count
            ctx.save_for_backward(grad)
        return gram_s.new_tensor(total / count)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None


def _accumulate(slope, cos_s, u, rows, row_dot, row_sum, anchor_sum) -> None:
    """Add one anchor block's contributions to the three gradient accumulators (see AngleLoss)."""
    row_dot[rows] = (slope * cos_s).sum(dim=-1)  # (c, N)
    p = slope.mul_(u[:, None, :])  # r_ajk u_ak
    row_sum[rows] = p.sum(dim=-1) * u
    if p.shape[0] == 1:  # one anchor: a fused in-place update, the fastest path on CPU
        anchor_sum.addcmul_(u[0][:, None], p[0])
    else:
        anchor_sum.add_(p.mul_(u[:, :, None]).sum(dim=0))


def _gram_gradient(u, row_dot, row_sum, anchor_sum) -> torch.Tensor:
    """dL/dG (entries taken as independent) from the accumulators, before the 1/N^3 factor.

    c_ajk = u_aj u_ak m_ajk with m_ajk = G_jk - h_aj - h_ak, h_aj = G_aj - G_aa / 2, and
    u_aj = (G_aa + G_jj - 2 G_aj)^(-1/2). With r = h'(c - c^t), p_ajk = r_ajk u_aj u_ak:
      through m: dG_jk += sum_a p_ajk; dG_aj -= 2 sum_k p_ajk; dG_aa += sum_jk p_ajk
      through u: kappa_aj = dL/dn_aj / n_aj = -2 u_aj^2 sum_k r_ajk c_ajk;
                 dG_aj -= kappa_aj; dG_aa += sum_j kappa_aj / 2; dG_jj += sum_a kappa_aj / 2
    """
    kappa = -2 * u * u * row_dot
    grad = anchor_sum - 2 * row_sum - kappa
    diagonal = row_sum.sum(dim=1) + 0.5 * (kappa.sum(dim=1) + kappa.sum(dim=0))
    return grad + torch.diag(diagonal)


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """L_angle of the module docstring, Gram form; student (N, H), teacher (N, D) -> scalar."""
    if chunk < 1:
        raise ValueError(f"angle chunk must be >= 1, got {chunk}")
    with torch.no_grad():
        gram_t = _gram(teacher.to(student.dtype))
    return AngleLoss.apply(_gram(student), gram_t, int(chunk))


def naive_rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Reference L_angle as the authors' code computes it: (N, N, D) differences. Small N only."""
    def cosines(x):
        diff = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)  # (N, N, D), row a = anchor
        return diff @ diff.transpose(1, 2)  # (N, N, N)
    with torch.no_grad():
        t_cos = cosines(teacher)
    return F.smooth_l1_loss(cosines(student), t_cos, reduction="mean")


def tcpl_kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_kl of the module docstring; student (N, H), teacher (N, D) -> scalar."""
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0

    def off_diagonal_logits(x):  # (N, N) cosines / tau without the diagonal -> (N, N - 1)
        unit = F.normalize(x, dim=-1)
        sim = unit @ unit.t() / temperature
        return sim.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
    with torch.no_grad():
        log_p_teacher = off_diagonal_logits(teacher).log_softmax(dim=1)
    log_p_student = off_diagonal_logits(student).log_softmax(dim=1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


def check_tcpl_config(cfg: TcplConfig) -> None:
    """One-line ConfigError naming the key of a TCPL setting that cannot work."""
    if cfg.form not in FORMS:
        raise ConfigError(f"loss.tcpl.form: expected one of {FORMS}, got {cfg.form!r}")
    if cfg.temperature <= 0:
        raise ConfigError(f"loss.tcpl.temperature: must be > 0, got {cfg.temperature}")
    if cfg.angle_chunk < 1:
        raise ConfigError(f"loss.tcpl.angle_chunk: must be >= 1, got {cfg.angle_chunk}")


class TcplLoss(nn.Module):
    """TCPL in the configured form; see the module docstring for the formulas.

    normalize_teacher: L2-normalise the teacher vectors first (authors' pipeline; rkd form).
    """

    def __init__(self, cfg: TcplConfig, normalize_teacher: bool = True):
        super().__init__()
        check_tcpl_config(cfg)
        self.cfg = cfg
        self.normalize_teacher = normalize_teacher

    def forward(self, *, query: torch.Tensor, query_eot: torch.Tensor | None = None,
                **unused) -> dict[str, torch.Tensor]:
        """query (Q, H) student vectors, query_eot (Q, D) frozen CLIP end-of-text embeddings."""
        if query_eot is None:
            raise ValueError("TCPL needs `query_eot` (the batch's frozen CLIP caption embeddings)")
        if query_eot.dim() != 2 or query_eot.shape[0] != query.shape[0]:
            raise ValueError(f"query_eot: expected ({query.shape[0]}, D), got {tuple(query_eot.shape)}")
        teacher = query_eot.detach().to(query.dtype)
        cfg = self.cfg
        if cfg.form == "kl":
            return {"tcpl_kl": cfg.kl_weight * tcpl_kl_loss(query, teacher, cfg.temperature)}
        if self.normalize_teacher:
            teacher = F.normalize(teacher, dim=-1)
        return {"tcpl_dist": cfg.distance_weight * rkd_distance_loss(query, teacher),
                "tcpl_angle": cfg.angle_weight * rkd_angle_loss(query, teacher, cfg.angle_chunk)}
