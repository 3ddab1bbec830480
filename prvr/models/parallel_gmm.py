"""The released GMMFormer-v2 video block (authors' `DyGMMBlock`): complete transformer layers run
in parallel on the same input, each with its own Gaussian window, fused per position.

Gaussian window of width w over N tokens (multiplies the scaled attention logits):

    g_w[i, j] = exp(-(t_j - c_i)^2 / (2 s^2)) / max_j' exp(-(t_j' - c_i)^2 / (2 s^2)),
    c_i = i / N (query centre),  t_j = j / (N - 1) (key grid, torch.linspace(0, 1, N)),
    s = max(w, 0.01) / 9

so the nearest key keeps its logit and far keys' logits shrink towards 0 (towards uniform
attention, not towards -inf). The max is taken in log space, which gives the authors' values
wherever theirs are finite and stays finite where their exp underflows to 0/0.

Layer k (`WindowedLayer`, their BertAttention): y = LN1(x + drop(attn_k(x))),
out_k = LN2(y + drop(FFN_k(y))), FFN H -> 4H -> H; attn_k has no output projection; merged tokens
add log(size) to the logits (ToMe) after the window.

Fusion (`ParallelGMMBlock`): a learned token u (1, 1, H), shared by the clip and frame blocks,
attends to each layer's output (one cross-attention layer, FFN H -> H, shared across layers),
giving a summary s_k (B, H) per layer; an MLP maps s_k to one logit per position,
a[b, n, k] = (W2 drop(relu(W1 s_k)))[n] (W2: H -> N, so the block is tied to N tokens), and

    out[b, n] = sum_k softmax_k(a[b, n, :] / T)[k] * out_k[b, n],    T = fusion temperature (0.09).

Speed and memory (the same numbers to float32 rounding): in inference (eval mode, autograd off) a
`WindowedLayer` runs `_infer`: one projection for q, k and v, attention head by head on strided views
(no copies) in float32 or all heads at once after one layout copy under bfloat16 autocast (each the
faster there), the window and scale applied in place, the linears through `inference_linear` (oneDNN
with the bias and ReLU fused); each window is computed once per (N, width) and cached; the block
mixes the layers' outputs in place instead of stacking them (`ParallelGMMBlock._infer`). In training,
`activation_checkpointing` (set by train.activation_checkpointing through
`attention.enable_activation_checkpointing`) recomputes each parallel layer in the backward pass.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prvr.models.attention import FeedForward, _split_heads, checkpointed, inference_linear
from prvr.models.dropout import Dropout
from prvr.models.stacked import stacked_linear

MIN_WIDTH = 1e-2  # the released code clamps widths at 0.01 before dividing by 9
WIDTH_DIVISOR = 9.0


def gaussian_window(n_tokens: int, width: float, device=None) -> torch.Tensor:
    """(N, N) multiplicative window g_w of the module docstring, rows scaled to max 1."""
    centre = torch.arange(n_tokens, device=device, dtype=torch.float32) / n_tokens  # (N,)
    grid = torch.linspace(0, 1, n_tokens, device=device)  # (N,)
    sigma = max(width, MIN_WIDTH) / WIDTH_DIVISOR
    log_g = -(grid[None, :] - centre[:, None]) ** 2 / (2 * sigma ** 2)  # (N, N)
    return (log_g - log_g.max(dim=-1, keepdim=True).values).exp()


@functools.lru_cache(maxsize=128)
def _cached_window(n_tokens: int, width: float, device: str) -> torch.Tensor:
    """gaussian_window(n_tokens, width) computed once per (N, width, device); callers must not
    modify it (every use multiplies it into another tensor)."""
    return gaussian_window(n_tokens, width, torch.device(device))


def _scaled_windowed_logits(logits: torch.Tensor, d: int, window: torch.Tensor | None,
                            key_bias: torch.Tensor | None) -> torch.Tensor:
    """q.k / sqrt(d), times the window, plus the key bias (B, 1, 1, N) or (B, 1, N): in place where the
    dtype allows (the product's output is not kept for its backward, so autograd allows it too)."""
    logits.div_(math.sqrt(d))
    if window is not None:
        logits.mul_(window.to(logits.dtype))
    if key_bias is not None:  # out of place: a float32 bias promotes bfloat16 logits (autocast)
        logits = logits + key_bias
    return logits


class WindowedAttention(nn.Module):
    """Multi-head attention without output projection; optional multiplicative Gaussian window,
    additive key terms (padding, log size). query (B, Nq, H), keys/values (B, N, H)."""

    def __init__(self, hidden: int, heads: int, dropout: float, width: float | None = None):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of heads {heads}")
        self.heads = heads
        self.width = width
        self.query = nn.Linear(hidden, hidden)
        self.key_value = stacked_linear(hidden, hidden, 2)  # [W_k; W_v], clipped per projection
        self.drop = Dropout(dropout)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                key_bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n_q, h = query.shape
        q = _split_heads(self.query(query), self.heads)  # (B, heads, Nq, d)
        k, v = (_split_heads(t, self.heads) for t in self.key_value(keys).chunk(2, dim=-1))
        window = None if self.width is None else _cached_window(keys.shape[1], self.width, str(keys.device))
        logits = _scaled_windowed_logits(q @ k.transpose(-1, -2), q.shape[-1], window, key_bias)  # (B, heads, Nq, N)
        attended = self.drop(logits.softmax(dim=-1)) @ v  # (B, heads, Nq, d)
        return attended.transpose(1, 2).reshape(b, n_q, h)

    def forward_from_token(self, token: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """One shared query token (1, 1, H) attending to each of M sequences keys (M, N, H),
        without a window: the same as forward(token.expand(M, 1, H), keys) with the key and value
        projections folded through the single query (exact algebra, far fewer FLOPs):
            logit[m, h, n] = (W_k,h^T q_h) . keys[m, n] / sqrt(d)  (+ q_h . b_k,h: same for every n,
                             cancels in the softmax)
            out[m, h]      = W_v,h (sum_n a[m, h, n] keys[m, n]) + b_v,h sum_n a[m, h, n]
        (the sum of a is 1 unless dropout removed some weights). Returns (M, 1, H)."""
        m, n, h = keys.shape
        d = h // self.heads
        q = self.query(token).view(self.heads, d)  # (heads, d)
        w_k, w_v = self.key_value.weight.view(2, self.heads, d, h).unbind(0)  # (heads, d, H) each
        b_v = self.key_value.bias.view(2, self.heads, d)[1]  # (heads, d)
        folded = torch.einsum("hd,hdi->hi", q, w_k) / math.sqrt(d)  # (heads, H)
        weights = self.drop((keys @ folded.t()).softmax(dim=1))  # (M, N, heads)
        pooled = torch.einsum("mnh,mni->mhi", weights, keys)  # (M, heads, H)
        out = torch.einsum("mhi,hdi->mhd", pooled, w_v) + weights.sum(dim=1)[..., None] * b_v
        return out.reshape(m, 1, h)


class WindowedLayer(nn.Module):
    """Post-norm transformer layer around `WindowedAttention` (their BertAttention /
    BertCrossAttention): x = LN1(x + drop(attn)), x = LN2(x + drop(FFN(x))).
    Self-attention in inference takes `_infer`; `forward` supports activation checkpointing."""

    activation_checkpointing = False  # attention.enable_activation_checkpointing sets it

    def __init__(self, hidden: int, heads: int, dropout: float, width: float | None = None,
                 ffn_expansion: int = 4):
        super().__init__()
        self.attention = WindowedAttention(hidden, heads, dropout, width)
        self.ffn = FeedForward(hidden, dropout, expansion=ffn_expansion)
        self.norm1 = nn.LayerNorm(hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.drop1 = Dropout(dropout)
        self.drop2 = Dropout(dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None,
                key_bias: torch.Tensor | None = None) -> torch.Tensor:
        if keys is None and not self.training and not torch.is_grad_enabled():
            return self._infer(x, key_bias)
        return checkpointed(self, self._forward, x, keys, key_bias)  # (B, Nq, H)

    def _forward(self, x: torch.Tensor, keys: torch.Tensor | None,
                 key_bias: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(x, x if keys is None else keys, key_bias)
        return self._finish(x, attended)  # (B, Nq, H)

    @torch.no_grad()
    def _infer(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        """`_forward(x, None, key_bias)` without dropout or autograd, in fewer passes over memory:
        q, k, v from one projection, logits scaled and windowed in place, linears through
        `inference_linear`. (B, N, H) -> (B, N, H)."""
        attention, ffn = self.attention, self.ffn.net
        b, n, h = x.shape
        weight = torch.cat([attention.query.weight, attention.key_value.weight])  # (3H, H)
        bias = torch.cat([attention.query.bias, attention.key_value.bias])
        qkv = inference_linear(x.reshape(b * n, h), weight, bias).view(b, n, 3, attention.heads, -1)
        window = None if attention.width is None else _cached_window(n, attention.width, str(x.device))
        attend = _attend_per_head if qkv.dtype == torch.float32 else _attend_heads_together
        y = self.norm1(x + attend(qkv, window, key_bias))  # (B, N, H)
        hidden = inference_linear(y.reshape(b * n, h), ffn[0].weight, ffn[0].bias, relu=True)
        out = inference_linear(hidden, ffn[3].weight, ffn[3].bias).view(b, n, h)
        return self.norm2(y.add_(out))  # y is this layer's own tensor; float32 under autocast too

    def forward_from_token(self, token: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The layer for one shared query token (1, 1, H) over M key sequences (M, N, H) -> (M, 1, H);
        see `WindowedAttention.forward_from_token`."""
        attended = self.attention.forward_from_token(token, keys)
        return self._finish(token.expand(keys.shape[0], 1, -1), attended)

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop1(attended))
        return self.norm2(x + self.drop2(self.ffn(x)))


def _attend_per_head(qkv: torch.Tensor, window: torch.Tensor | None,
                     key_bias: torch.Tensor | None) -> torch.Tensor:
    """Attention head by head on strided views of qkv (B, N, 3, heads, d), no layout copy -> (B, N, H).
    The faster form in float32 (measured at the paper's shape)."""
    b, n, _, heads, d = qkv.shape
    bias = None if key_bias is None else key_bias[:, 0]  # (B, 1, N)
    per_head = []
    for i in range(heads):
        logits = torch.bmm(qkv[:, :, 0, i], qkv[:, :, 1, i].transpose(1, 2))  # (B, N, N)
        logits = _scaled_windowed_logits(logits, d, window, bias)
        per_head.append(torch.bmm(logits.softmax(dim=-1), qkv[:, :, 2, i]))  # (B, N, d)
    return torch.cat(per_head, dim=-1)


def _attend_heads_together(qkv: torch.Tensor, window: torch.Tensor | None,
                           key_bias: torch.Tensor | None) -> torch.Tensor:
    """The same attention for all heads in one product each, after one layout copy of qkv
    (B, N, 3, heads, d) -> (B, N, H). The faster form in bfloat16, where a product on strided views
    copies them anyway and each small operation costs more in thread handovers than in arithmetic
    (6 % of the encoding at the paper's shape); the same numbers as `_attend_per_head`."""
    b, n, _, heads, d = qkv.shape
    q, k, v = qkv.permute(2, 0, 3, 1, 4).reshape(3, b, heads, n, d).unbind(0)  # (B, heads, N, d) each
    logits = q @ k.transpose(-1, -2)  # (B, heads, N, N)
    logits = _scaled_windowed_logits(logits, d, window, key_bias)
    return (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, heads * d)


class ParallelGMMBlock(nn.Module):
    """Parallel windowed layers fused per position; see the module docstring.

    widths: the windowed layers' widths; layer 0 has no window (so 1 + len(widths) layers).
    n_tokens: the sequence length the fusion MLP is built for (inputs must have exactly it).
    The fusion token is passed in (`weight_token`), so two blocks can share it.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, widths: Sequence[float],
                 n_tokens: int, temperature: float):
        super().__init__()
        self.n_tokens = n_tokens
        self.temperature = temperature
        self.layers = nn.ModuleList([WindowedLayer(hidden, heads, dropout, None)] + [
            WindowedLayer(hidden, heads, dropout, float(w)) for w in widths])
        self.summary = WindowedLayer(hidden, heads, dropout, None, ffn_expansion=1)
        self.fusion_hidden = nn.Linear(hidden, hidden)
        self.fusion_drop = Dropout(dropout)
        self.fusion_out = nn.Linear(hidden, n_tokens)

    def forward(self, x: torch.Tensor, weight_token: torch.Tensor,
                sizes: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, H), weight_token (1, 1, H), sizes (B, N) frames per token or None."""
        if x.shape[1] != self.n_tokens:
            raise ValueError(f"parallel GMM block built for {self.n_tokens} tokens, got {x.shape[1]}")
        key_bias = None if sizes is None else sizes.to(x.dtype).log()[:, None, None, :]
        token = weight_token.to(x.dtype)  # (1, 1, H), one query for all K * B sequences
        if not self.training and not torch.is_grad_enabled():
            return self._infer(x, token, key_bias)
        return self._forward(x, token, key_bias)

    def _forward(self, x: torch.Tensor, token: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        """The layers' outputs stacked (K, B, N, H), summarised together and mixed: (B, N, H)."""
        b, n, h = x.shape
        outs = torch.stack([layer(x, key_bias=key_bias) for layer in self.layers])  # (K, B, N, H)
        k = outs.shape[0]
        summaries = self.summary.forward_from_token(token, outs.reshape(k * b, n, h)).view(k, b, h)
        return fuse_layers(self._fusion_logits(summaries), outs, self.temperature)

    def _fusion_logits(self, summaries: torch.Tensor) -> torch.Tensor:
        """(K, B, H) layer summaries -> (K, B, N) fusion logits."""
        return self.fusion_out(self.fusion_drop(F.relu(self.fusion_hidden(summaries))))

    def _infer(self, x: torch.Tensor, token: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        """forward without dropout or autograd, never holding the (K, B, N, H) stack of the layers'
        outputs or its weighted copy (at the paper's shape, 32 videos: 50 MB each, fresh memory that
        glibc maps and faults in at every call): each layer is summarised alone and the mixture is
        accumulated in place. The same numbers to float32 rounding."""
        outs = [layer(x, key_bias=key_bias) for layer in self.layers]  # K x (B, N, H)
        summaries = torch.cat([self.summary.forward_from_token(token, out) for out in outs], dim=1)  # (B, K, H)
        weights = (self._fusion_logits(summaries.transpose(0, 1)) / self.temperature).softmax(dim=0)  # (K, B, N)
        fused = outs[0].mul_(weights[0].unsqueeze(-1).to(outs[0].dtype))  # outs[0] is layer 0's own tensor
        for out, weight in zip(outs[1:], weights[1:]):
            fused.addcmul_(out, weight.unsqueeze(-1).to(out.dtype))
        return fused  # (B, N, H)


def fuse_layers(logits: torch.Tensor, outs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-position mixture of the layers: logits (K, B, N), outs (K, B, N, H) ->
    sum_k softmax_k(logits / temperature)[k] * outs[k], (B, N, H)."""
    weights = (logits / temperature).softmax(dim=0)  # (K, B, N), over the layers
    # a weighted sum, not einsum: einsum makes this a bmm of B * N tiny (1 x K) @ (K x H) products
    return (weights.unsqueeze(-1) * outs).sum(dim=0)
