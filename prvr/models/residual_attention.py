"""The attention-only encoder layer of the BERT-based PRVR baselines (MS-SL, GMMFormer v1, DL-DKD):
their BertAttention (BertSelfAttention + BertSelfOutput) without a feed-forward block,

    y = LayerNorm(x + Dropout(attention(x)))        x, y: (B, N, H), or packed valid tokens (T, H)

where `attention` ends in the output dense layer (MultiHeadAttention with output_projection=True, or
GMMFormer v1's windowed self-attention). The LayerNorm is the module their code names "LayerNorm",
which their optimiser leaves undecayed.

    layer = bert_attention(hidden=384, heads=4, dropout=0.1)
    y = layer(x, key_padding_mask=mask)            # mask (B, N) bool, True = valid token
"""
from __future__ import annotations

import torch
from torch import nn

from prvr.models.attention import MultiHeadAttention
from prvr.models.dropout import Dropout


class ResidualAttention(nn.Module):
    """LN(x + drop(attention(x))) around any attention module ending in an output projection."""

    def __init__(self, attention: nn.Module, hidden: int, dropout: float):
        super().__init__()
        self.attention = attention
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, **attention_inputs) -> torch.Tensor:
        return self.norm(x + self.drop(self.attention(x, **attention_inputs)))  # (B, N, H)

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor,
                       key_padding_mask: torch.Tensor) -> torch.Tensor:
        """On packed valid tokens (T, H); see `MultiHeadAttention.forward_packed`."""
        attended = self.attention.forward_packed(x, token_index, key_padding_mask)
        return self.norm(x + self.drop(attended))  # (T, H)


def bert_attention(hidden: int, heads: int, dropout: float) -> ResidualAttention:
    """Their BertAttention: multi-head self-attention with output dense layer, dropout on the
    probabilities and the output, residual LayerNorm; padded keys (mask False) are excluded."""
    return ResidualAttention(MultiHeadAttention(hidden, heads, dropout, output_projection=True), hidden, dropout)
