"""The evaluation's rank counts straight from the encodings, without its (Q, V) score matrix.

    higher, tied, stats = split_rank_counts(queries, videos, branches, weights, positive, tolerance)

What evaluate.split_scores + metrics.rank_counts give: per query h, the videos scored strictly
higher than its relevant one, and t, those tied with it, under the near-tie rule of
prvr.evaluation.ties. A chunk of scoring.QUERY_CHUNK queries at a time: the chunk's (c, V) scores
(model_scores.chunk_scores: the same float32 numbers as split_scores's rows), counted except for
each query's near pairs (within ties.NEAR_BAND of its relevant video), which are kept as (query,
video) indices; at the end every near pair of the split is scored in float64 in one PairScorer call
(each distinct video read once for all the queries that need it, instead of the candidates' tokens
gathered again for every query: at the TVR test size with random weights, whose scores crowd
together, most queries have dozens of near candidates) and counted on its settled score
(ties.settled). Memory: one chunk's scores and the near pairs, instead of the (Q, V) float64
matrix and its float32 parts (at the TVR test size 190 MB + 3 x 95 MB).

Screens (`screen`): the arithmetic of a chunk's first pass.
  "float32"   the model's score in float32, the reference.
  "bfloat16"  max branches only (none guided): unit queries and unit tokens rounded to bfloat16 and
              multiplied (float32 accumulation, bfloat16 output; torch has no bfloat16-in, float32-out
              product on CPU): each fused score within bound = bf16_bound(H) (|w_0| + |w_1|) of its
              float32 value. Every video whose screened score is within 2 bound + NEAR_BAND of the
              relevant video's (the relevant one included) is rescored in float32 (`rescore_pairs`);
              any other is more than NEAR_BAND from the relevant one in float32 and on the same side,
              so it keeps its screened score and the settled ties and counts are the float32 screen's:
              every R@K and queries_with_ties exact (a rule keyed on each query's 100th best would make
              only R@1..R@100 exact and rescore about as many). A chunk with more than MAX_RESCORED of
              its pairs to rescore is redone in float32, and so are the chunks after it.
  "auto"      bfloat16 where torch multiplies bfloat16 natively on this CPU (AMX or AVX512-BF16 through
              oneDNN) and no branch is guided, float32 elsewhere (on an AVX2 CPU a bfloat16 product runs
              at 0.6-20 GFLOP/s, float32 at about 115 on two cores). The counts are the same whatever
              the screen: the choice is one of speed only.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from prvr.evaluation import model_scores, scoring, ties
from prvr.evaluation.metrics import rank_counts

SCREENS = ("auto", "float32", "bfloat16")
MAX_RESCORED = 0.1  # share of a chunk's (query, video) pairs rescored in float32 before falling back
BF16_ROUNDOFF = 2.0 ** -8  # unit roundoff of bfloat16 (8 significant bits)


def bf16_bound(hidden: int) -> float:
    """Bound on |bfloat16 screened cosine - float32 cosine| of one max branch, u = BF16_ROUNDOFF.

    The unit query and token rounded to bfloat16 move by at most u in norm each: <= 2u + u^2 on their
    product; float32 accumulation of H products: <= g = H 2^-24 / (1 - H 2^-24) (1 + u)^2 (torch's CPU
    and CUDA bfloat16 products accumulate in float32); the bfloat16 output: <= u (1 + u)^2; the float32
    reference's own rounding: <= g again. A max over tokens moves by at most the largest such error.
    At H = 384: 0.01181."""
    unit = 2.0 ** -24
    g = hidden * unit / (1 - hidden * unit) * (1 + BF16_ROUNDOFF) ** 2
    u = BF16_ROUNDOFF
    return 2 * u + u * u + u * (1 + u) ** 2 + 2 * g


def native_bfloat16() -> bool:
    """Whether torch multiplies bfloat16 natively on this CPU (oneDNN with AMX or AVX512-BF16)."""
    cpu = torch.cpu
    has = lambda name: bool(getattr(cpu, name, lambda: False)())  # noqa: E731 (private helpers; absent: False)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and (
        has("_is_amx_tile_supported") or has("_is_avx512_bf16_supported"))


def pick_screen(screen: str, branches) -> str:
    """The screen used: `screen`, or for "auto" bfloat16 where it pays (module docstring)."""
    if screen not in SCREENS:
        raise ValueError(f"screen: expected one of {', '.join(SCREENS)}, got {screen!r}")
    guided = any(branch.guide_key is not None for branch in branches)
    if screen == "bfloat16" and guided:
        raise ValueError("screen bfloat16: a guided score branch has no error bound; use float32")
    if screen == "auto":
        return "bfloat16" if native_bfloat16() and not guided else "float32"
    return screen


def video_groups(videos: np.ndarray):
    """Yield (video, positions): each video of `videos` (P,) with the positions holding it."""
    order = np.argsort(videos, kind="stable")  # (P,) grouped by video
    ordered = videos[order]
    bounds = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(ordered[a]), order[a:b]


def max_cosines(query: torch.Tensor, unit: torch.Tensor, inv_query: torch.Tensor) -> torch.Tensor:
    """(k,) max_n <q, u_n> / |q| of queries (k, H) against one video's unit tokens (N, H), as
    scoring._cosine_block_maxima computes it (inv_query: (k,) 1 / |q|)."""
    return (query @ unit.t()).amax(dim=-1) * inv_query


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside (restored after): many small products, each (k, H) x (H, N), run
    faster without waking a second thread for each (9,478 near pairs of 217 videos: 0.15-0.27 s on one
    thread, 2.2-2.5 s on two, 2 cores with other work running, where each product waited for the
    second thread's turn)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def canonical_videos(videos: dict[str, torch.Tensor], keys: tuple[str, ...], among: np.ndarray) -> np.ndarray:
    """(len(among),) for each video index of `among` the first of `among` whose encodings (the outputs
    `keys`) are the same bytes (a digest of them)."""
    first: dict[bytes, int] = {}
    canonical = np.empty(len(among), dtype=np.int64)
    for i, v in enumerate(among):
        digest = hashlib.blake2b(digest_size=16)
        for key in keys:
            digest.update(videos[key][v].contiguous().numpy().tobytes())
        canonical[i] = first.setdefault(digest.digest(), int(v))
    return canonical


class PairScorer:
    """ties.PairScores of the model's score in float64 from the same encodings (the score function of
    model_scores on float64 copies): the pairs grouped by video, each distinct video scored once for
    every query that needs it. Videos with the same encodings (copies) share one computation, so
    they tie to the bit whatever the matrix kernels do with a row's position in a product."""

    def __init__(self, queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches, weights):
        self.queries, self.videos, self.branches, self.weights = queries, videos, branches, weights
        self.video_keys = model_scores.video_keys(branches)
        self.guided = any(branch.guide_key is not None for branch in branches)

    @torch.no_grad()
    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        n_videos = self.videos[self.video_keys[0]].shape[0]
        among, position = np.unique(cols, return_inverse=True)  # the videos asked for
        content = canonical_videos(self.videos, self.video_keys, among)[position.reshape(-1)]  # (P,)
        keys, inverse = np.unique(rows * n_videos + content, return_inverse=True)
        query_of, video_of = np.divmod(keys, n_videos)  # (U,) distinct (query, video content) pairs
        query64 = {k: v.double() for k, v in self.queries.items()}  # (Q, H) each
        inv64 = {k: scoring.inverse_norms(v) for k, v in query64.items()}  # (Q,)
        out = np.empty(len(keys))
        with one_thread():
            for video, picked in video_groups(video_of):
                out[picked] = self._one_video(video, query64, inv64, torch.from_numpy(query_of[picked]))
        return out[inverse.reshape(-1)]

    def _one_video(self, video: int, query64: dict, inv64: dict, index: torch.Tensor) -> np.ndarray:
        """(k,) float64 scores of one video for the queries `index`."""
        if self.guided:  # the general path (model_scores on float64 copies)
            some = {k: v[index] for k, v in query64.items()}  # (k, H)
            one = {k: self.videos[k][video:video + 1].double() for k in self.video_keys}  # (1, N, H)
            return model_scores.model_scores_chunked(some, one, self.branches, self.weights, len(index),
                                                     torch.float64)[:, 0].numpy()
        parts = [max_cosines(query64[b.query_key][index], scoring.unit_tokens(self.videos[b.video_key][video].double()),
                             inv64[b.query_key][index]) for b in self.branches]
        return (self.weights[0] * parts[0] + self.weights[1] * parts[1]).numpy()


@dataclass
class ScreenStats:
    """What the screens did: chunks per screen, (query, video) pairs rescored in float32, the largest
    share of a bfloat16-screened chunk's pairs within the rescoring band (the fallback's included)."""
    bfloat16_chunks: int = 0
    float32_chunks: int = 0
    rescored_pairs: int = 0
    settled_queries: int = 0
    band_share: float = 0.0


def _bf16_chunk(query: dict[str, torch.Tensor], prepared: dict, branches, weights) -> torch.Tensor:
    """(c, V) float32 fused score of a chunk from bfloat16 products of unit queries and tokens."""
    parts = []
    for branch in branches:
        q = query[branch.query_key]
        unit_q = (q * scoring.inverse_norms(q)[:, None]).bfloat16()  # (c, H)
        tokens = prepared["bf16", branch.video_key]  # (V, N, H) bfloat16
        parts.append(scoring._cosine_block_maxima(unit_q, tokens, torch.ones(q.shape[0])).float())
    return weights[0] * parts[0] + weights[1] * parts[1]


def rescore_pairs(query: dict[str, torch.Tensor], prepared: dict, branches, weights,
                  rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(P,) float32 fused scores of the chunk's (query row, video) pairs, video by video (each video's
    tokens read once): max_n <q, t_vn / |t_vn|> / |q| per max branch, as the float32 screen."""
    parts = []
    for branch in branches:
        q, unit = query[branch.query_key], prepared["unit", branch.video_key]
        inv_q = scoring.inverse_norms(q)  # (c,)
        out = torch.empty(len(rows))
        with one_thread():
            for video, picked in video_groups(cols):
                index = torch.from_numpy(rows[picked])
                out[torch.from_numpy(picked)] = max_cosines(q[index], unit[video], inv_q[index])
        parts.append(out)
    return (weights[0] * parts[0] + weights[1] * parts[1]).numpy()


def _check_finite(block: np.ndarray, start: int) -> None:
    if np.isnan(block).any():
        row = int(np.isnan(block).any(axis=1).argmax())
        raise ValueError(f"scores: NaN in the row of query {start + row}")


def _screened_block(chunk_queries, prepared, branches, weights, positive, stats: ScreenStats):
    """The chunk's (c, V) float64 scores from the bfloat16 screen, or None to redo it in float32."""
    block = _bf16_chunk(chunk_queries, prepared, branches, weights).double().numpy()  # (c, V)
    rows = np.arange(len(block))
    band = 2 * bf16_bound(chunk_queries[branches[0].query_key].shape[1]) * sum(map(abs, weights)) + ties.NEAR_BAND
    near_rows, near_cols = np.nonzero(np.abs(block - block[rows, positive][:, None]) <= band)
    stats.band_share = max(stats.band_share, len(near_rows) / block.size)
    if len(near_rows) > MAX_RESCORED * block.size:
        return None
    block[near_rows, near_cols] = rescore_pairs(chunk_queries, prepared, branches, weights, near_rows, near_cols)
    stats.rescored_pairs += len(near_rows)
    stats.bfloat16_chunks += 1
    return block


def _far_counts(block: np.ndarray, positive: np.ndarray, band: float):
    """(higher, tied, near rows, near cols) of a chunk: rank_counts with the near candidates of a query
    (ties.near_pairs, the relevant one kept) left out, to be counted once settled."""
    rows, cols = ties.near_pairs(block, positive, band)
    others = cols != positive[rows]
    block[rows[others], cols[others]] = -np.inf  # counts neither higher nor tied
    higher, tied = rank_counts(block, positive)
    return higher, tied, rows, cols


def _add_near_counts(higher, tied, rows, cols, positive, scorer, tolerance) -> None:
    """Count every query's near pairs on their settled float64 scores (ties.settled), in place."""
    if not len(rows):
        return
    exact = ties.settled(scorer(rows, cols), rows, cols, positive, tolerance)  # (P,)
    relevant = np.zeros(len(positive))
    relevant[rows[cols == positive[rows]]] = exact[cols == positive[rows]]
    higher += np.bincount(rows[exact > relevant[rows]], minlength=len(higher))
    tied += np.bincount(rows[(exact == relevant[rows]) & (cols != positive[rows])], minlength=len(tied))


@torch.no_grad()
def split_rank_counts(queries: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], branches,
                      weights: tuple[float, float], positive: np.ndarray, tolerance: float,
                      query_chunk: int = scoring.QUERY_CHUNK, screen: str = "float32"):
    """(higher, tied, stats): the (Q,) counts of metrics.rank_counts on split_scores's settled (Q, V)
    matrix, a query chunk at a time (module docstring); stats: a ScreenStats. The near pairs of every
    chunk are kept (query, video indices) and scored in float64 once at the end (PairScorer)."""
    screen = pick_screen(screen, branches)
    ties.check_tolerance(tolerance)
    n_queries = queries[branches[0].query_key].shape[0]
    prepared = model_scores.prepare_videos(branches, videos)
    if screen == "bfloat16":
        prepared.update({("bf16", b.video_key): prepared["unit", b.video_key].bfloat16() for b in branches})
    stats, counts, near = ScreenStats(), [], []
    for start in range(0, n_queries, query_chunk):
        chunk = {k: v[start:start + query_chunk] for k, v in queries.items()}
        pos = positive[start:start + query_chunk]
        block = None
        if screen == "bfloat16":
            block = _screened_block(chunk, prepared, branches, weights, pos, stats)
            screen = "bfloat16" if block is not None else "float32"
        if block is None:
            block = model_scores.chunk_scores(chunk, prepared, branches, weights).double().numpy()  # (c, V)
            stats.float32_chunks += 1
        _check_finite(block, start)
        higher, tied, rows, cols = _far_counts(block, pos, ties.NEAR_BAND)
        counts.append((higher, tied))
        near.append((rows + start, cols))
    del prepared
    higher = np.concatenate([h for h, _ in counts]) if counts else np.zeros(0, dtype=np.int64)
    tied = np.concatenate([t for _, t in counts]) if counts else np.zeros(0, dtype=np.int64)
    rows = np.concatenate([r for r, _ in near]) if near else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([c for _, c in near]) if near else np.zeros(0, dtype=np.int64)
    stats.settled_queries = len(np.unique(rows))
    _add_near_counts(higher, tied, rows, cols, positive, PairScorer(queries, videos, branches, weights), tolerance)
    return higher, tied, stats
