"""prvr.search.int8_scan: the int8 first pass of exact search. Every row's exact max cosine lies within
the stated slack of the int8 one (odd dims padded, outlier dims, zero tokens), the slack is needed and
not vacuous, the top k through it equals the exhaustive exact ranking (copies, near ties, windows),
and bad --scan values are one line (tests/test_search.py: the CLI's hits with int8 and float16)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prvr.cli import main
from prvr.errors import PrvrError
from prvr.models.base import MAX_CLIP_AND_FRAME as BRANCHES
from prvr.models.base import ScoreBranch
from prvr.search.fast_scores import exact_top_k_rows, inverse_norms, pairwise_scores
from prvr.search.int8_scan import (MARGIN, RELATIVE, int8_top_k_rows, quantize, quantize_index, row_bounds,
                                   wants_int8)
from prvr.search.searcher import ranking
from prvr.search.windows import group_max

WEIGHTS = (0.4, 0.6)


def _exact_row_max(query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(R,) float64 max over each row's tokens of the cosine with query (H,): the slow reference."""
    t, q = tokens.double(), query.double()
    return ((t @ q) / (t.norm(dim=-1).clamp(min=1e-12) * q.norm())).amax(-1)


@pytest.mark.parametrize("dim", [32, 40, 100, 384])
def test_every_row_max_is_within_its_slack(dim):
    g = torch.Generator().manual_seed(dim)
    tokens = torch.randn(300, 12, dim, generator=g)
    tokens[:100, :, 0] *= 30  # an outlier dimension: coarse codes, a large residual, a large slack
    tokens[100:150] = tokens[100:101] + 0.01 * torch.randn(50, 12, dim, generator=g)  # near copies
    tokens = tokens.half()
    scan = quantize(tokens, inverse_norms(tokens))
    assert scan.codes.shape[1] % 32 == 0
    for query in [torch.randn(dim, generator=g) * 7 for _ in range(5)] + [tokens[100, 3].float()]:
        approx, slack = row_bounds(query, scan)
        exact = _exact_row_max(query, tokens)
        assert ((approx - exact).abs() <= slack).all()
        assert (slack[100:] < 0.05).all()  # not vacuous where the tokens have no outlier


def test_the_residual_term_is_needed():
    """Without each row's residual norm E the bound would fail: rounding terms alone are too small."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2000, 8, 64, generator=g).half()
    scan = quantize(tokens, inverse_norms(tokens))
    query = torch.randn(64, generator=g)
    approx, _ = row_bounds(query, scan)
    error = (approx - _exact_row_max(query, tokens)).abs()
    assert (error > RELATIVE * approx.abs() + MARGIN).any()
    assert (error <= scan.row_error + RELATIVE * approx.abs() + MARGIN * (1 + scan.row_error)).all()


def test_a_zero_token_gets_zero_codes_not_nan():
    tokens = torch.randn(4, 3, 32).half()
    tokens[1, 2] = 0
    scan = quantize(tokens, inverse_norms(tokens))
    approx, slack = row_bounds(torch.randn(32), scan)
    assert torch.isfinite(approx).all() and torch.isfinite(slack).all()
    assert (scan.codes[1 * 3 + 2] == 0).all()


def _index(n_videos=300, rows_per_video=1, seed=0, dim=32):
    g = torch.Generator().manual_seed(seed)
    rows = n_videos * rows_per_video
    tokens = {"frame_tokens": torch.randn(rows, 8, dim, generator=g).half(),
              "clip_tokens": torch.randn(rows, 3, dim, generator=g).half()}
    for t in tokens.values():  # exact copies (tie to the bit) and a near tie
        t[10 * rows_per_video:20 * rows_per_video] = t[:rows_per_video].repeat(10, 1, 1)
        t[25 * rows_per_video, 0, 0] += 0.001
    return SimpleNamespace(tokens=tokens, inv_norms={k: inverse_norms(t) for k, t in tokens.items()},
                           ids=[f"v{i:04d}" for i in range(n_videos)],
                           row_video=torch.arange(n_videos).repeat_interleave(rows_per_video))


@pytest.mark.parametrize("k,rows_per_video", [(1, 1), (5, 1), (40, 1), (5, 3)])
def test_top_k_equals_the_exhaustive_ranking(k, rows_per_video):
    index = _index(rows_per_video=rows_per_video)
    scans = quantize_index(index, BRANCHES)
    every = torch.arange(len(index.row_video))
    g = torch.Generator().manual_seed(1)
    queries = [torch.randn(1, 32, generator=g) for _ in range(15)] + [index.tokens["frame_tokens"][0, :1].float()]
    for q in queries:
        query = {"query": q}
        rows = pairwise_scores(query, index.tokens, BRANCHES, WEIGHTS, every)  # the exhaustive reference
        full = group_max(rows, index.row_video, len(index.ids))[0].numpy()
        order, scores, row_scores = int8_top_k_rows(query, index, scans, BRANCHES, WEIGHTS, k, ranking)
        assert order == ranking(full, index.ids)[:k]
        np.testing.assert_array_equal(scores.numpy()[order], full[order])
        reference = exact_top_k_rows(query, index.tokens, index.inv_norms, BRANCHES, WEIGHTS, k, index.ids, ranking,
                                     index.row_video)
        assert order == reference[0]
        assert torch.isnan(scores).sum() > 0  # not every video went to the float16 pass


def test_guided_branches_and_float32_tokens_keep_the_float16_pass():
    index = _index()
    guided = (ScoreBranch("clip", "query", "clip_tokens", "frame_tokens"), BRANCHES[1])
    assert quantize_index(index, guided) is None
    index.tokens = {k: t.float() for k, t in index.tokens.items()}
    assert quantize_index(index, BRANCHES) is None


def test_a_bad_scan_value_is_one_line(capsys):
    with pytest.raises(PrvrError, match="--scan must be one of auto, int8, float16"):
        wants_int8("int4")
    assert wants_int8("int8") and not wants_int8("float16")
    assert main(["search", "no_such_index", "a query", "--scan", "int4"]) == 1
    assert "--scan must be one of" in capsys.readouterr().err

