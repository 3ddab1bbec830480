"""An int8 copy of an index's tokens for exact search's first pass (`prvr search --scan int8`, the
default where torch has a vectorised kernel for it): the pass over every token is bound by memory
bandwidth, and int8 codes are half the bytes of the stored float16. A stated bound per row says
which videos can still be in the top k; only those are then ranked as before (float16 products
within HALF_BOUND, then float64 near the k-th: prvr.search.fast_scores), so the top k, its order and
its scores stay exact.

    scan = quantize(tokens, inv_norms)                 # per stored key, once per loaded index
    approx, slack = row_bounds(query, scan)            # (R,), (R,): |exact row max - approx| <= slack
    videos = int8_candidates(query, scans, branches, weights, k, row_video, n_videos)

Each token t is kept as its unit vector x = t / |t| in int8 codes c and one bfloat16 scale s per token
(s >= max_i |x_i| / 127): x = s c + r, and e = |r| is computed exactly when quantising (a row keeps
the max of its tokens' e, E). torch's weight-only int8 product (aten._weight_int8pack_mm) multiplies
a bfloat16 query by each code times its scale (exact in float32: 7 by 8 significant bits),
accumulates in float32 and rounds the output to bfloat16. A unit query u is split as
u = u_hi + u_lo + d, both bfloat16 (|d| <= 2^-18), and both rows go through one product; per token

    |<u, x> - o| <= |<u, r>| + |<d, s c>| + accumulation + output rounding
                 <= e + 2^-18 (1 + e) + H 2^-24 (1 + e) + 2^-9 |y|     (Cauchy-Schwarz; |s c| <= 1 + e)

(y: the product before rounding, |y| <= 1.01 |o|), so a row's max over tokens m~ = max_n o_n is
within E + RELATIVE |m~| + MARGIN (1 + E) of the exact max
(MARGIN covers the two small terms for H <= 2,048 and the float32 unit vectors). For random tokens of
384 dims E is about 0.01 (five times HALF_BOUND), so a few hundred of 10k videos pass to the float16
pass instead of a dozen; on tokens with structure the top scores stand apart and fewer pass.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from prvr.errors import PrvrError
from prvr.evaluation import model_scores
from prvr.search.fast_scores import NORM_EPS, half_bound_holds, top_k_among
from prvr.search.windows import group_max

RELATIVE = 2 ** -9 * 1.01  # the bfloat16 output's rounding, relative to the rounded output
MARGIN = 2e-4  # >= 2^-18 + 2,048 x 2^-24 (accumulation) + the float32 unit vectors' rounding
ALIGN = 32  # the kernel reads 16 values at a time from 32-byte aligned rows: dims are padded to this
SCANS = ("auto", "int8", "float16")  # --scan: int8 where kernel_is_fast, or always, or never
QUANT_BLOCK = 4096  # tokens quantised at a time (6 MB of float32: stays in cache)


@dataclass
class Int8Tokens:
    """One stored key's tokens (R, N, H) as int8 codes (R * N, Hp) (H padded with zeros to a multiple
    of ALIGN), a bfloat16 scale per token (R * N,) and the max residual norm per row (R,) float64."""
    codes: torch.Tensor
    scales: torch.Tensor
    row_error: torch.Tensor
    dim: int

    def nbytes(self) -> int:
        return self.codes.nbytes + self.scales.nbytes + self.row_error.nbytes


def kernel_is_fast() -> bool:
    """Whether torch's int8 product is vectorised here (x86 with AVX2 or AVX-512, ARM64); elsewhere
    it is a scalar loop, slower than the float16 product it would replace."""
    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            or platform.machine().lower() in ("arm64", "aarch64"))


@torch.no_grad()
def quantize(tokens: torch.Tensor, inv_norms: torch.Tensor) -> Int8Tokens:
    """tokens (R, N, H) any float dtype, inv_norms (R, N) float32 -> their unit vectors in int8."""
    rows, n, h = tokens.shape
    padded = -(-h // ALIGN) * ALIGN
    flat, inv = tokens.reshape(-1, h), inv_norms.reshape(-1)
    codes = torch.zeros(rows * n, padded, dtype=torch.int8)  # zero columns past h add nothing
    scales = torch.empty(rows * n, dtype=torch.bfloat16)
    error = torch.empty(rows * n, dtype=torch.float32)
    for start in range(0, rows * n, QUANT_BLOCK):
        stop = min(rows * n, start + QUANT_BLOCK)
        x = flat[start:stop].float().mul_(inv[start:stop, None])  # (b, H) unit tokens
        scale = x.abs().amax(1).mul_((1 + 2 ** -8) / 127).bfloat16()  # (b,) rounded up past max|x| / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).float()  # a zero token: codes 0
        code = x.mul(scale.reciprocal()[:, None]).round_().clamp_(-127, 127)  # (b, H)
        codes[start:stop, :h] = code.to(torch.int8)
        scales[start:stop] = scale.bfloat16()  # exact: scale came from bfloat16
        error[start:stop] = torch.linalg.vector_norm(x.sub_(code.mul_(scale[:, None])), dim=1)  # |r|
    row_error = error.view(rows, n).amax(1).double()
    return Int8Tokens(codes, scales, row_error, h)


@torch.no_grad()
def row_bounds(query: torch.Tensor, scan: Int8Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """query (H,) any float -> ((R,) float64 max over each row's tokens of the cosine from int8 codes,
    (R,) float64 slack: the exact max is within it)."""
    unit = query.double() / query.double().norm().clamp(min=NORM_EPS)  # (H,)
    hi = unit.to(torch.bfloat16)
    split = torch.zeros(2, scan.codes.shape[1], dtype=torch.bfloat16)  # (2, Hp), fresh: aligned rows
    split[0, :scan.dim], split[1, :scan.dim] = hi, (unit - hi.double()).to(torch.bfloat16)
    out = torch.ops.aten._weight_int8pack_mm(split, scan.codes, scan.scales)  # (2, R * N) bfloat16
    cos = (out[0].float() + out[1].float()).view(len(scan.row_error), -1)  # (R, N)
    approx = cos.amax(1).double()  # (R,)
    return approx, RELATIVE * approx.abs() + scan.row_error + MARGIN * (1 + scan.row_error)


def int8_candidates(query: dict[str, torch.Tensor], scans: dict[str, Int8Tokens], branches,
                    weights: tuple[float, float], k: int, row_video: torch.Tensor, n_videos: int) -> torch.Tensor:
    """(C,) ascending ids of the videos that can be in the exact top k (ties included): every video
    whose upper bound reaches the k-th best lower bound. A video left out is below k videos for sure."""
    approx = slack = 0
    for w, branch in zip(weights, branches):
        m, s = row_bounds(query[branch.query_key][0], scans[branch.video_key])
        approx, slack = approx + w * m, slack + abs(w) * s
    lower = group_max(approx - slack, row_video, n_videos)[0]  # (V,) a video's score is its best row's
    upper = group_max(approx + slack, row_video, n_videos)[0]
    kth = torch.topk(lower, min(k, n_videos)).values[-1]
    return torch.nonzero(upper >= kth).squeeze(1)


def wants_int8(scan: str) -> bool:
    """Whether a search with --scan `scan` keeps an int8 copy ("auto": where kernel_is_fast)."""
    if scan not in SCANS:
        raise PrvrError(f"--scan must be one of {', '.join(SCANS)}, got {scan!r}")
    return scan == "int8" or (scan == "auto" and kernel_is_fast())


def quantize_index(index, branches) -> dict[str, Int8Tokens] | None:
    """The int8 copies of a LoadedIndex's keys the branches read; None where the first pass would not
    be exact-safe to follow (fast_scores.half_bound_holds: float16 tokens, unguided branches)."""
    if not half_bound_holds(index.tokens, index.inv_norms, branches):
        return None
    return {key: quantize(index.tokens[key], index.inv_norms[key]) for key in model_scores.video_keys(branches)}


def int8_top_k_rows(query: dict[str, torch.Tensor], index, scans: dict[str, Int8Tokens], branches,
                    weights: tuple[float, float], k: int, ranking) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """As fast_scores.exact_top_k_rows on a LoadedIndex (the same top k, order and scores), the float16
    pass run on int8_candidates only."""
    videos = int8_candidates(query, scans, branches, weights, k, index.row_video, len(index.ids))
    return top_k_among(query, index.tokens, index.inv_norms, index.row_video, index.ids, videos, branches, weights,
                       k, ranking)
