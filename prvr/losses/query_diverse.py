"""GMMFormer's query-diversity loss (`loss.query_diverse`, their `query_diverse_loss`): the captions
of one video are pushed apart, so that the query space keeps the different moments of a video
distinct instead of collapsing them onto one point.

With x_q = query q's vector (`query`, (Q, H)), v(q) its video (`query_to_video`, (Q,)), the
siblings S_q = {p != q : v(p) = v(q)}, margin m and scale s (their neg_factor = [0.15, 32]):

    L_qd = (1 / Q) sum_q log(1 + sum_{p in S_q} exp(s * (cos(x_q, x_p) + m)))

averaged over ALL Q captions, as theirs (sum / bs): a caption without siblings adds log 1 = 0 but
counts in the mean. Term returned: {"query_diverse": weight * L_qd} (their loss_factor[2]: 0.001).

Their code builds the sibling mask as one block label[0]..label[-1] per video, which is right only
when each video's captions are consecutive in the batch (their collate makes them so); here the
mask is v(p) = v(q), right for any order. log(1 + sum exp(a)) is evaluated as logsumexp over
{0} and the a's: the same value, finite where exp(a) would overflow.

    loss_fn = QueryDiverseLoss(QueryDiverseConfig(enabled=True))
    terms = loss_fn(query=out["query"], query_to_video=q2v)   # {"query_diverse": scalar}
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prvr.config_losses import QueryDiverseConfig


def sibling_mask(query_to_video: torch.Tensor) -> torch.Tensor:
    """(Q,) video index per caption -> (Q, Q) bool, True where p != q belong to the same video."""
    same = query_to_video[:, None] == query_to_video[None, :]  # (Q, Q)
    return same & ~torch.eye(len(query_to_video), dtype=torch.bool, device=same.device)


def query_diverse_loss(query: torch.Tensor, query_to_video: torch.Tensor, margin: float,
                       scale: float) -> torch.Tensor:
    """Unweighted L_qd of the module docstring: query (Q, H), query_to_video (Q,) -> scalar."""
    unit = F.normalize(query, dim=-1)
    logits = scale * (unit @ unit.t() + margin)  # (Q, Q)
    logits = logits.masked_fill(~sibling_mask(query_to_video), float("-inf"))
    one = logits.new_zeros(len(query), 1)  # the "1 +" inside the log, as exp(0)
    return torch.cat([one, logits], dim=1).logsumexp(dim=1).mean()  # mean over all Q captions


class QueryDiverseLoss(nn.Module):
    """Loss part giving {"query_diverse": weight * L_qd}; reads `query` and `query_to_video`."""

    def __init__(self, cfg: QueryDiverseConfig):
        super().__init__()
        if not cfg.scale > 0 or not cfg.weight >= 0:
            raise ValueError(f"loss.query_diverse: scale must be > 0 and weight >= 0, got "
                             f"scale={cfg.scale}, weight={cfg.weight}")
        self.cfg = cfg

    def forward(self, *, query: torch.Tensor, query_to_video: torch.Tensor,
                **unused) -> dict[str, torch.Tensor]:
        if query.dim() != 2 or query_to_video.shape != query.shape[:1] or query_to_video.dtype != torch.long:
            raise ValueError(f"query_diverse: expected query (Q, H) and long query_to_video (Q,), got "
                             f"{tuple(query.shape)} and {query_to_video.dtype} {tuple(query_to_video.shape)}")
        loss = query_diverse_loss(query, query_to_video, self.cfg.margin, self.cfg.scale)
        return {"query_diverse": self.cfg.weight * loss}
