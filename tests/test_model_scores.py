"""Score branches: the default pair equals prvr_scores_chunked; a guided branch against a slow loop."""
import torch
import torch.nn.functional as F

from prvr.evaluation import model_scores, scoring
from prvr.models.base import MAX_CLIP_AND_FRAME, ScoreBranch


def _slow_guided(query, tokens, guide):
    out = torch.empty(len(query), len(tokens))
    for q in range(len(query)):
        for v in range(len(tokens)):
            sims = [float(F.cosine_similarity(query[q], t, dim=0)) for t in tokens[v]]
            best = sims.index(max(sims))  # first maximum
            out[q, v] = F.cosine_similarity(query[q], guide[v, best], dim=0)
    return out


def test_default_branches_equal_prvr_scores_chunked():
    g = torch.Generator().manual_seed(0)
    query, clips, frames = torch.randn(7, 8, generator=g), torch.randn(5, 3, 8, generator=g), torch.randn(5, 6, 8, generator=g)
    got = model_scores.model_scores_chunked({"query": query}, {"clip_tokens": clips, "frame_tokens": frames},
                                            MAX_CLIP_AND_FRAME, (0.4, 0.6), query_chunk=3)
    want = scoring.prvr_scores_chunked(query, clips, frames, 0.4, 0.6, query_chunk=3, dtype=torch.float64)
    assert torch.equal(got, want)


def test_guided_branch_matches_slow_loop_and_takes_first_maximum():
    g = torch.Generator().manual_seed(1)
    query, tokens, guide = torch.randn(4, 5, generator=g), torch.randn(3, 6, 5, generator=g), torch.randn(3, 6, 5, generator=g)
    tokens[1, 4] = tokens[1, 2]  # a tie: the first position must be used
    got = model_scores.guided_branch_chunked(query, tokens, guide, query_chunk=2)
    assert torch.allclose(got, _slow_guided(query, tokens, guide), atol=1e-6)


def test_hand_computed_guided_score():
    query = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[0.0, 1.0], [1.0, 0.1]]])  # the second token is closest to the query
    guide = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # ... so its guide row (orthogonal) is scored
    branches = (ScoreBranch("clip", "query", "proposals"), ScoreBranch("frame", "query", "proposals", "guided"))
    got = model_scores.model_scores_chunked({"query": query}, {"proposals": tokens, "guided": guide}, branches, (0.5, 0.5))
    clip = 1.0 / (1.0 + 0.01) ** 0.5
    assert torch.allclose(got, torch.tensor([[0.5 * clip + 0.5 * 0.0]], dtype=torch.float64), atol=1e-6)
    assert model_scores.video_keys(branches) == ("proposals", "guided")
