"""Linears that stack several projections by rows (q, k and v in one matrix product), marked so
that an optimiser which clips each parameter tensor on its own clips each projection on its own.

The authors keep one nn.Linear per projection (query, key, value; per window in GMMFormer v1) and
their BertAdam clips every tensor to norm 1 separately. One stacked tensor clipped as a whole would
scale all three projections by the largest one's norm: at a TVR-shape batch the query encoder's value
gradient had norm 5.8 and query/key 0.4, so the authors clip only value while a whole-tensor clip
scales all three by 1/5.9. `row_blocks(p)` tells the optimiser how many equal row blocks p holds.

    qkv = stacked_linear(hidden, hidden, 3)    # weight (3H, H) = [W_q; W_k; W_v], bias (3H,)
"""
from __future__ import annotations

from torch import nn

ROW_BLOCKS = "row_blocks"  # the attribute set on a stacked linear's weight and bias


def stacked_linear(in_features: int, block_features: int, blocks: int) -> nn.Linear:
    """nn.Linear(in_features, blocks * block_features) whose weight and bias say they hold `blocks`
    projections. Initialised exactly as that nn.Linear (its init depends on in_features only, so
    also as `blocks` separate linears drawn one after another would be, row block by row block)."""
    linear = nn.Linear(in_features, blocks * block_features)
    for parameter in linear.parameters():
        setattr(parameter, ROW_BLOCKS, blocks)
    return linear


def row_blocks(parameter) -> int:
    """How many equal row blocks (separate projections) a parameter stacks: 1 unless stacked_linear made it."""
    return getattr(parameter, ROW_BLOCKS, 1)
