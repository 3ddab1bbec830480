"""The evaluation's score over an index held in its stored precision, without a copy of the tokens
per query: a search scans every video for every query, so the tokens stay float16 (half the memory
of float32; 100k videos of the TVR shape are 12.3 GB) and their inverse norms are computed once.

    inv = inverse_norms(tokens)                              # (V, N) float32, once per index
    s = cosine_maxima(query, tokens, inv)                    # (Q, V) float32
    s[q, v] = max_n <q, t_vn> * inv[v, n] / |q|

The same cosine as prvr.evaluation.scoring.branch_scores_chunked (which scales a float32 copy of all
tokens to unit length on every call), to float32 rounding; a block of BLOCK_VIDEOS videos is cast
to float32 at a time. Branches guided by another output (MS-SL's key-clip branch) keep the
evaluation's own function (prvr.evaluation.model_scores).
"""
from __future__ import annotations

import torch

from prvr.evaluation import model_scores
from prvr.evaluation.scoring import NORM_EPS
from prvr.search.windows import group_max

BLOCK_VIDEOS = 512  # videos cast to float32 and multiplied at a time (512 x 128 x 384 x 4 B = 100 MB)


def inverse_norms(tokens: torch.Tensor) -> torch.Tensor:
    """(V, N) float32: 1 / max(|t_vn|, NORM_EPS), computed a block at a time."""
    out = torch.empty(tokens.shape[:2], dtype=torch.float32)
    for start in range(0, tokens.shape[0], BLOCK_VIDEOS):
        block = tokens[start:start + BLOCK_VIDEOS].float()  # (b, N, H)
        out[start:start + BLOCK_VIDEOS] = block.norm(dim=-1).clamp(min=NORM_EPS).reciprocal()
    return out


@torch.no_grad()
def cosine_maxima(query: torch.Tensor, tokens: torch.Tensor, inv_norms: torch.Tensor) -> torch.Tensor:
    """(Q, V) float32: max over each video's tokens of the cosine with each query; query (Q, H) float32,
    tokens (V, N, H) any float dtype, inv_norms (V, N) float32."""
    query = query.float()
    n_queries, (n_videos, n_tokens, h) = query.shape[0], tokens.shape
    out = torch.empty(n_queries, n_videos)
    for start in range(0, n_videos, BLOCK_VIDEOS):
        stop = min(n_videos, start + BLOCK_VIDEOS)
        block = tokens[start:stop].reshape(-1, h).float()  # (b * N, H)
        sims = (query @ block.t()).view(n_queries, stop - start, n_tokens)  # (Q, b, N)
        out[:, start:stop] = (sims * inv_norms[start:stop]).amax(dim=-1)
    return out / query.norm(dim=-1).clamp(min=NORM_EPS)[:, None]


@torch.no_grad()
def index_scores(queries: dict[str, torch.Tensor], tokens: dict[str, torch.Tensor],
                 inv_norms: dict[str, torch.Tensor], branches, weights: tuple[float, float]) -> torch.Tensor:
    """(Q, V) float64: w_0 s_0 + w_1 s_1 over the model's two score branches, fused in float32 as the
    evaluation fuses them."""
    parts, full = [], None
    for branch in branches:
        if branch.guide_key is None:
            parts.append(cosine_maxima(queries[branch.query_key], tokens[branch.video_key],
                                       inv_norms[branch.video_key]))
        else:  # a guided branch reads other outputs: the evaluation's function, on float32 tokens
            full = full or {k: v.float() for k, v in tokens.items()}  # one float32 copy for all such branches
            parts.append(model_scores.branch_chunked(branch, queries, full, model_scores.scoring.QUERY_CHUNK))
    return (weights[0] * parts[0] + weights[1] * parts[1]).to(torch.float64)


# |half-precision cosine - exact cosine| for one branch, with margin: the query rounded to float16
# (relative 2^-11 per component, <= 2^-11 in the cosine), float32 accumulation of H products (torch's
# CPU half product; <= H 2^-24 ~ 2.3e-5 at H = 384) and the float16 output (<= 2^-11 relative): about
# 1.0e-3; twice that here. The tokens are the stored float16 values themselves: no error there.
HALF_BOUND = 2e-3


@torch.no_grad()
def half_cosine_maxima(query: torch.Tensor, tokens: torch.Tensor, inv_norms: torch.Tensor) -> torch.Tensor:
    """cosine_maxima within HALF_BOUND, from float16 products (no float32 copy of the tokens: a
    float16 matrix-vector product reads half the bytes). tokens must be float16."""
    unit_query = (query.float() / query.float().norm(dim=-1, keepdim=True).clamp(min=NORM_EPS)).half()  # (Q, H)
    n_queries, (n_videos, n_tokens, h) = unit_query.shape[0], tokens.shape
    out = torch.empty(n_queries, n_videos)
    for start in range(0, n_videos, BLOCK_VIDEOS):
        stop = min(n_videos, start + BLOCK_VIDEOS)
        sims = unit_query @ tokens[start:stop].reshape(-1, h).t()  # (Q, b * N) float16
        out[:, start:stop] = (sims.float().view(n_queries, stop - start, n_tokens) * inv_norms[start:stop]).amax(-1)
    return out


def pairwise_scores(query: dict[str, torch.Tensor], tokens: dict[str, torch.Tensor], branches,
                    weights: tuple[float, float], rows: torch.Tensor) -> torch.Tensor:
    """(len(rows),) float64 scores of ONE query with the video rows `rows`, each token's cosine in
    float64 on its own (an elementwise product summed per token): a video's score does not depend on
    which other videos are scored with it, so tied videos tie to the bit and a near tie is decided
    the same way whatever the candidates are."""
    total = torch.zeros(len(rows), dtype=torch.float64)
    for w, branch in zip(weights, branches):
        q = query[branch.query_key][0].double()  # (H,)
        t = tokens[branch.video_key][rows].double()  # (C, N, H)
        cos = (t * q).sum(-1) / (t.norm(dim=-1).clamp(min=NORM_EPS) * q.norm().clamp(min=NORM_EPS))  # (C, N)
        total += w * cos.amax(dim=-1)
    return total


def exact_top_k(query: dict[str, torch.Tensor], tokens: dict[str, torch.Tensor], inv_norms: dict[str, torch.Tensor],
                branches, weights: tuple[float, float], k: int, ids: list[str], ranking,
                row_video: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor]:
    """The k best videos for ONE query and their exact scores (V,) (NaN where not computed), ties by id;
    see exact_top_k_rows (row_video: each token row's video, None: one row per video)."""
    order, scores, _ = exact_top_k_rows(query, tokens, inv_norms, branches, weights, k, ids, ranking, row_video)
    return order, scores


def half_bound_holds(tokens: dict[str, torch.Tensor], inv_norms: dict[str, torch.Tensor], branches) -> bool:
    """Whether HALF_BOUND holds for these tokens: float16 tokens, unguided branches, token norms within
    float16's range."""
    keys = model_scores.video_keys(branches)
    return (all(b.guide_key is None for b in branches) and all(tokens[key].dtype == torch.float16 for key in keys)
            and all(float(inv_norms[key].min()) >= 1 / 60000 for key in keys))


def top_k_among(query: dict[str, torch.Tensor], tokens: dict[str, torch.Tensor], inv_norms: dict[str, torch.Tensor],
                row_video: torch.Tensor, ids: list[str], videos: torch.Tensor, branches, weights: tuple[float, float],
                k: int, ranking) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """exact_top_k_rows over the videos `videos` (C,) (ascending) only, their rows gathered: the order
    (index video numbers), scores (V,) and row scores (R,), NaN where not computed. The exact top k of
    the whole index when every video left out is known to be below k others (a first stage's bound)."""
    rows = torch.nonzero(torch.isin(row_video, videos)).squeeze(1)  # (C',) their rows, row order
    local = torch.searchsorted(videos, row_video[rows])  # (C',) each row's candidate number
    keys = model_scores.video_keys(branches)
    order, sub_scores, sub_rows = exact_top_k_rows(query, {key: tokens[key][rows] for key in keys},
                                                   {key: inv_norms[key][rows] for key in keys}, branches, weights,
                                                   k, [ids[v] for v in videos.tolist()], ranking, local)
    scores = torch.full((len(ids),), float("nan"), dtype=torch.float64)
    scores[videos] = sub_scores
    row_scores = torch.full((len(row_video),), float("nan"), dtype=torch.float64)
    row_scores[rows] = sub_rows
    return [int(videos[i]) for i in order], scores, row_scores


def exact_top_k_rows(query: dict[str, torch.Tensor], tokens: dict[str, torch.Tensor],
                     inv_norms: dict[str, torch.Tensor], branches, weights: tuple[float, float], k: int,
                     ids: list[str], ranking, row_video: torch.Tensor | None = None
                     ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The k best videos for ONE query, their exact scores (V,) and the exact scores of their rows (R,)
    (NaN where not computed). A video's score is the max over its rows (the windows of a long video,
    prvr.search.windows; row_video (R,) names each row's video, None: row i is video i); ties by id.

    Exact (pairwise_scores) where it matters: float16 products give every row a score within
    B = HALF_BOUND * (w_0 + w_1) of its exact one, so a video's max over its rows is within B of its
    exact max too; only the videos within 2 B of the k-th best such video score can be in the top k
    (any video of the exact top k is), so only their rows are scored exactly. Falls back to scoring
    every row exactly where the bound does not hold (float32 tokens, a guided branch, a token norm
    beyond float16's range)."""
    n_rows = next(iter(tokens.values())).shape[0]
    row_video = torch.arange(n_rows) if row_video is None else row_video
    if not half_bound_holds(tokens, inv_norms, branches):
        row_scores = index_scores(query, tokens, inv_norms, branches, weights)[0]  # (R,)
        scores = group_max(row_scores, row_video, len(ids))[0]  # (V,)
        return ranking(scores.numpy(), ids)[:k], scores, row_scores
    approx_rows = sum(w * half_cosine_maxima(query[b.query_key], tokens[b.video_key], inv_norms[b.video_key])
                      for w, b in zip(weights, branches))[0]  # (R,)
    approx = group_max(approx_rows, row_video, len(ids))[0]  # (V,)
    band = 2 * HALF_BOUND * (abs(weights[0]) + abs(weights[1]))
    kth = torch.topk(approx, min(k, len(ids))).values[-1]
    candidates = approx >= kth - band  # (V,)
    rows = torch.nonzero(candidates[row_video]).squeeze(1)  # (C,) the candidates' rows, row order
    row_scores = torch.full((n_rows,), float("nan"), dtype=torch.float64)
    row_scores[rows] = pairwise_scores(query, tokens, branches, weights, rows)  # float64
    scores = group_max(row_scores, row_video, len(ids))[0]  # (V,), NaN but for the candidates
    videos = torch.nonzero(candidates).squeeze(1).tolist()
    order = ranking(scores[videos].numpy(), [ids[v] for v in videos])[:k]
    return [videos[i] for i in order], scores, row_scores
