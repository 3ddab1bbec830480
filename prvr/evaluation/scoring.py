"""Query-video scores of the PRVR model: max over a video's tokens, fused over the two branches.

    s_branch(q, v) = max_n cos(q, token_{v,n})          (dot product when normalize=False)
    s(q, v) = w_clip * s_clip(q, v) + w_frame * s_frame(q, v)

Differentiable (the losses use these functions too); videos are processed in chunks so a large
(Q, B, N) similarity tensor is never held at once.

Speed (why this is not a plain einsum + amax): one matmul per chunk gives the dot products, and the
cosines follow from them by rescaling with the inverse norms, so `branch_dot_and_cosine` needs one
(Q, B*N, H) product for both scores. The (Q, B, N) similarities are not kept for backward: the
gradient of a max reaches only the winning token, so `_SelectedDot` back-propagates through the
(Q, B) winners with gathers and an index_add (O(Q B H) instead of two O(Q B N H) matmuls). Exact
ties (or non-finite maxima, e.g. a fully masked video) fall back to the reference einsum + amax,
so the gradient at ties is amax's (split evenly), exactly as before.

    scores = prvr_scores(query, clip_tokens, frame_tokens, w_clip=0.4, w_frame=0.6)   # (Q, B)
    dots, cosines = branch_dot_and_cosine(query, frame_tokens)                        # (Q, B) each

Evaluation at benchmark size (no gradient): `prvr_scores_chunked` gives prvr_scores's numbers (to
float32 rounding; it needs no tie fallback) query_chunk queries at a time, in cache-sized
(queries x videos x tokens) blocks:

    scores = prvr_scores_chunked(query, clip_tokens, frame_tokens, 0.4, 0.6, query_chunk=1024,
                                 dtype=torch.float64)                                 # (Q, B)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_CHUNK_ELEMENTS = 1 << 26  # bound on Q * chunk * N similarities held at once (~256 MB fp32)
NORM_EPS = 1e-12  # F.normalize's eps: norms below it are clamped


def check_shapes(query: torch.Tensor, tokens: torch.Tensor) -> None:
    """ValueError unless query is (Q, H) and tokens (B, N, H)."""
    if query.dim() != 2 or tokens.dim() != 3 or query.shape[-1] != tokens.shape[-1]:
        raise ValueError(f"branch_scores: expected query (Q, H) and tokens (B, N, H), got "
                         f"{tuple(query.shape)} and {tuple(tokens.shape)}")


def _chunk_size(n_queries: int, n_tokens: int) -> int:
    return max(1, MAX_CHUNK_ELEMENTS // max(1, n_queries * n_tokens))


def reference_branch_scores(query: torch.Tensor, tokens: torch.Tensor, normalize: bool = True,
                            token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Straightforward max over tokens (einsum + amax, autograd throughout); see `branch_scores`."""
    check_shapes(query, tokens)
    if normalize:
        query, tokens = F.normalize(query, dim=-1), F.normalize(tokens, dim=-1)
    n_queries, _ = query.shape
    b, n, _ = tokens.shape
    chunk = _chunk_size(n_queries, n)
    parts = []
    for start in range(0, b, chunk):
        part = torch.einsum("qh,bnh->qbn", query, tokens[start:start + chunk])  # (Q, b, N)
        if token_mask is not None:
            pad = ~token_mask[start:start + chunk]  # (b, N)
            part = part.masked_fill(pad.unsqueeze(0), float("-inf"))
        parts.append(part.amax(dim=-1))  # (Q, b)
    return torch.cat(parts, dim=1) if parts else query.new_zeros(n_queries, 0)


def _max_and_index(part: torch.Tensor):
    """(Q, b, N) -> max (Q, b), first argmax (Q, b), and whether every max is unique and finite."""
    values, index = part.max(dim=-1)
    unique = ((part == values[..., None]).sum(-1) == 1).all()
    clean = bool(torch.isfinite(values).all()) and bool(unique)
    return values, index, clean


@torch.no_grad()
def _winners(query: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor | None,
             want_dots: bool, want_cosines: bool):
    """Max dot products and max cosines over tokens from one matmul per chunk of videos.

    Returns {"dot": (values, index), "cos": (values, index)} for the requested kinds (cosine
    values already divided by the query norms) and `clean` (no ties, all finite).
    """
    n_queries = query.shape[0]
    b, n, _ = tokens.shape
    inv_tokens = tokens.norm(dim=-1).clamp(min=NORM_EPS).reciprocal()  # (B, N)
    inv_query = query.norm(dim=-1).clamp(min=NORM_EPS).reciprocal()  # (Q,)
    chunk = _chunk_size(n_queries, n)
    found = {"dot": ([], []), "cos": ([], [])}
    clean = True
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        flat = tokens[start:stop].reshape(-1, tokens.shape[-1])  # (b * N, H)
        part = (query @ flat.t()).view(n_queries, stop - start, n)  # (Q, b, N)
        if token_mask is not None:
            part.masked_fill_(~token_mask[start:stop].unsqueeze(0), float("-inf"))
        if want_dots:
            values, index, ok = _max_and_index(part)
            found["dot"][0].append(values), found["dot"][1].append(index)
            clean &= ok
        if want_cosines:
            part.mul_(inv_tokens[start:stop].unsqueeze(0))  # (Q, b, N) <q, t> / |t|
            values, index, ok = _max_and_index(part)
            found["cos"][0].append(values * inv_query[:, None]), found["cos"][1].append(index)
            clean &= ok
    result = {kind: (torch.cat(v, dim=1), torch.cat(i, dim=1))
              for kind, (v, i) in found.items() if v}
    return result, clean


class _SelectedDot(torch.autograd.Function):
    """values[q, b] = <query_q, tokens[b, index[q, b]]>, with the values already computed.

    forward(query (Q, H), tokens (B, N, H), index (Q, B) long, values (Q, B)) -> values; the
    backward touches only the selected tokens: O(Q B H).
    """

    @staticmethod
    def forward(ctx, query, tokens, index, values):
        ctx.save_for_backward(query, tokens, index)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        query, tokens, index = ctx.saved_tensors
        b, n, h = tokens.shape
        grad_query = grad_tokens = None
        flat_tokens = tokens.reshape(b * n, h)
        rows = index + torch.arange(b, device=index.device)[None, :] * n  # (Q, B) into B*N
        chunk = _chunk_size(query.shape[0], h)
        if ctx.needs_input_grad[0]:
            grad_query = torch.zeros_like(query)
            for start in range(0, b, chunk):
                picked = flat_tokens[rows[:, start:start + chunk]]  # (Q, c, H)
                grad_query += torch.einsum("qc,qch->qh", grad[:, start:start + chunk], picked)
        if ctx.needs_input_grad[1]:
            grad_tokens = torch.zeros_like(flat_tokens)
            for start in range(0, b, chunk):
                g = grad[:, start:start + chunk]  # (Q, c)
                contrib = g[:, :, None] * query[:, None, :]  # (Q, c, H)
                targets = rows[:, start:start + chunk].reshape(-1)
                grad_tokens.index_add_(0, targets, contrib.reshape(-1, h))
            grad_tokens = grad_tokens.view(b, n, h)
        return grad_query, grad_tokens, None, None


def _differentiable(query, tokens, values, index, normalize: bool) -> torch.Tensor:
    """Attach the max's gradient (through the winning tokens) to precomputed (Q, B) values."""
    if not (torch.is_grad_enabled() and (query.requires_grad or tokens.requires_grad)):
        return values
    if normalize:
        query = F.normalize(query, dim=-1, eps=NORM_EPS)
        tokens = F.normalize(tokens, dim=-1, eps=NORM_EPS)
    return _SelectedDot.apply(query, tokens, index, values)


def branch_dot_and_cosine(query: torch.Tensor, tokens: torch.Tensor,
                          token_mask: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(max_n <q, t_n>, max_n cos(q, t_n)), each (Q, B), from one matmul; see `branch_scores`."""
    check_shapes(query, tokens)
    if query.shape[0] == 0 or tokens.shape[0] == 0:
        return (reference_branch_scores(query, tokens, False, token_mask),
                reference_branch_scores(query, tokens, True, token_mask))
    found, clean = _winners(query, tokens, token_mask, True, True)
    if not clean:
        return (reference_branch_scores(query, tokens, False, token_mask),
                reference_branch_scores(query, tokens, True, token_mask))
    return (_differentiable(query, tokens, *found["dot"], normalize=False),
            _differentiable(query, tokens, *found["cos"], normalize=True))


def branch_scores(query: torch.Tensor, tokens: torch.Tensor, normalize: bool = True,
                  token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max over each video's tokens of the query-token similarity.

    query: (Q, H); tokens: (B, N, H); token_mask: optional (B, N) bool, True = real token
    (padded tokens never win the max). normalize=True: cosine, else dot product. Returns (Q, B).
    """
    check_shapes(query, tokens)
    if query.shape[0] == 0 or tokens.shape[0] == 0:
        return reference_branch_scores(query, tokens, normalize, token_mask)
    kind = "cos" if normalize else "dot"
    found, clean = _winners(query, tokens, token_mask, not normalize, normalize)
    if not clean:
        return reference_branch_scores(query, tokens, normalize, token_mask)
    return _differentiable(query, tokens, *found[kind], normalize=normalize)


def prvr_scores(query: torch.Tensor, clip_tokens: torch.Tensor, frame_tokens: torch.Tensor,
                w_clip: float = 0.4, w_frame: float = 0.6) -> torch.Tensor:
    """Fused cosine score (Q, B) = w_clip * clip-branch max + w_frame * frame-branch max."""
    if clip_tokens.shape[0] != frame_tokens.shape[0]:
        raise ValueError(f"prvr_scores: {clip_tokens.shape[0]} videos in clip_tokens but "
                         f"{frame_tokens.shape[0]} in frame_tokens")
    return (w_clip * branch_scores(query, clip_tokens)
            + w_frame * branch_scores(query, frame_tokens))


QUERY_CHUNK = 1024  # queries scored at a time by prvr_scores_chunked
BLOCK_ELEMENTS = 1 << 21  # (queries x videos x tokens) similarities per block: 8 MB, cache-sized


def inverse_norms(x: torch.Tensor) -> torch.Tensor:
    """1 / max(|x|, eps) over the last dimension, as `_winners` computes it."""
    return x.norm(dim=-1).clamp(min=NORM_EPS).reciprocal()


def unit_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """tokens / max(|tokens|, eps) over the last dimension: a scaled copy (branch_scores_chunked's)."""
    return tokens * inverse_norms(tokens).unsqueeze(-1)


def _cosine_block_maxima(query, unit_tokens, inv_query):
    """(Q, B) max_n <q, t_n / |t_n|> / |q| in blocks of about BLOCK_ELEMENTS similarities."""
    n_queries, h = query.shape
    b, n, _ = unit_tokens.shape
    out = query.new_empty(n_queries, b)
    videos = max(1, BLOCK_ELEMENTS // max(1, n_queries * n))
    for start in range(0, b, videos):
        stop = min(b, start + videos)
        part = query @ unit_tokens[start:stop].reshape(-1, h).t()  # (Q, b * N)
        out[:, start:stop] = part.view(n_queries, stop - start, n).amax(dim=-1)
    return out.mul_(inv_query[:, None])


@torch.no_grad()
def branch_scores_chunked(query: torch.Tensor, tokens: torch.Tensor,
                          query_chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """branch_scores(query, tokens) (cosine, no gradient) query_chunk queries at a time: (Q, B) float32.

        s[q, v] = max_n <q, t_vn / |t_vn|> / |q|     (norms clamped at NORM_EPS, as everywhere here)

    The tokens are scaled to unit length once (a copy of `tokens`), so a block is one matrix product
    and a max. branch_scores computes the same cosines as max_n(<q, t_n> / |t_n|) / |q|, or, when any
    maximum is tied, switches the whole input to `reference_branch_scores` (max_n <q/|q|, t_n/|t_n|>)
    for amax's gradient at ties; without a gradient a tied maximum has one value whichever token
    attains it, so this needs no fallback. The three differ by float32 rounding. (The chunked scores
    used to restart a whole branch on the reference as branch_scores does: at the TVR test size one
    tied maximum among its 10895 x 2179 x 128 frame similarities is likely, and the restart doubled the
    scoring time.) Non-finite tokens give NaN scores, which the metrics reject. Memory: the result,
    the unit tokens and one block of about BLOCK_ELEMENTS similarities.
    """
    check_shapes(query, tokens)
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    n_queries, n_videos = query.shape[0], tokens.shape[0]
    if n_queries == 0 or n_videos == 0:
        return branch_scores(query, tokens)
    unit = unit_tokens(tokens)  # (B, N, H)
    inv_query = inverse_norms(query)  # (Q,)
    out = query.new_empty(n_queries, n_videos)
    for start in range(0, n_queries, query_chunk):
        stop = min(n_queries, start + query_chunk)
        out[start:stop] = _cosine_block_maxima(query[start:stop], unit, inv_query[start:stop])
    return out


@torch.no_grad()
def prvr_scores_chunked(query: torch.Tensor, clip_tokens: torch.Tensor, frame_tokens: torch.Tensor,
                        w_clip: float = 0.4, w_frame: float = 0.6, query_chunk: int = QUERY_CHUNK,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """prvr_scores (no gradient) computed query_chunk queries at a time: (Q, B) in `dtype`.

    Memory: the (Q, B) result, the two branches' (Q, B) float32 scores and one block of about
    BLOCK_ELEMENTS similarities; never a (Q, B, N) or (chunk, B, N) tensor. Each branch is
    `branch_scores_chunked` (unit tokens, no tie fallback), fused in float32 as prvr_scores does. The
    scores differ from prvr_scores's by float32 rounding (where the tokens are scaled, the matrix
    product's blocking, prvr_scores's reference arithmetic at ties), which can reorder only
    candidates whose scores are that close. (oneDNN's linear, faster than MKL for the model's fixed
    weights, took twice MKL's time here: it repacks the token block, new at every call, as a weight.)
    """
    check_shapes(query, clip_tokens)
    check_shapes(query, frame_tokens)
    if clip_tokens.shape[0] != frame_tokens.shape[0]:
        raise ValueError(f"prvr_scores: {clip_tokens.shape[0]} videos in clip_tokens but "
                         f"{frame_tokens.shape[0]} in frame_tokens")
    clip = branch_scores_chunked(query, clip_tokens, query_chunk)
    frame = branch_scores_chunked(query, frame_tokens, query_chunk)
    return (w_clip * clip + w_frame * frame).to(dtype)
