"""Attention building blocks of the PRVR model: multi-head attention, the Gaussian-window (GMM)
attention of GMMFormer, a post-norm transformer layer and attention pooling.

All attention goes through `torch.nn.functional.scaled_dot_product_attention` with an additive
float bias, so the Gaussian prior, key padding and ToMe-style log(size) terms are summed logits.

Gaussian windows (documented convention): token i sits at its centre c_i in [0, 1] (the fraction of
the video it covers; for N equal tokens c_i = (i + 0.5) / N). A window of width w adds

    log g(i, j) = -(c_j - c_i)^2 / (2 sigma^2),   sigma = w / 9

to the logit of query token i attending to key token j, so widths are RELATIVE to the video
length (w = 1 puts +-4.5 sigma over the whole video, as in the released GMMFormer code, which
divides its width by 9 on the same [0, 1] axis). Because widths are relative, the same widths serve
the 128-token frame branch and the 32-token clip branch. The released code multiplies the logits by
g instead; adding log g is the standard "prior times softmax" form and keeps far tokens suppressed
whatever the sign of the logit.

Merged tokens (token merging): the released code adds log(size) to the logits, as `key_bias` does
here, but keeps its Gaussian windows at uniform centres i / N whatever the tokens' sizes; here a
merged token's window sits at the centre of the frames it holds (`token_centres`), so the windows
follow the video's real time axis (a documented deviation).

    attn = GaussianMixtureAttention(hidden=64, heads=4, widths=(0.5, 1.0), dropout=0.1)
    block = TransformerLayer(attn, hidden=64, dropout=0.1)
    y = block(x)                       # x: (B, N, 64) -> (B, N, 64)

Speed and memory helpers shared by the layers (they change no number beyond float32 rounding):
`inference_linear` (a linear layer outside autograd; oneDNN's fused kernel on CPU, measured 10-20 %
faster than MKL's sgemm on this project's AMD EPYC machine) and activation checkpointing
(`enable_activation_checkpointing`, train.activation_checkpointing): a layer class that declares
`activation_checkpointing = False` and runs its forward through `checkpointed` can have its activations
recomputed in the backward pass instead of kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from prvr.models.dropout import Dropout
from prvr.models.stacked import stacked_linear

GAUSS_WIDTH_DIVISOR = 9.0  # sigma = width / 9 on the [0, 1] video axis (released-code convention)


def token_centres(sizes: torch.Tensor) -> torch.Tensor:
    """Centre of each token on the [0, 1] video axis from its size in frames.

    sizes: (B, N) positive frame counts, in temporal order -> (B, N) centres.
    Equal sizes give (i + 0.5) / N; merged tokens get the centre of the frames they hold.
    """
    sizes = sizes.float()
    ends = sizes.cumsum(dim=-1)  # (B, N)
    return (ends - sizes / 2) / ends[..., -1:]


def uniform_centres(n_tokens: int, device=None) -> torch.Tensor:
    """(N,) centres (i + 0.5) / N of N equal tokens."""
    return (torch.arange(n_tokens, device=device, dtype=torch.float32) + 0.5) / n_tokens


def gaussian_log_prior(centres: torch.Tensor, widths: Sequence[float]) -> torch.Tensor:
    """Log Gaussian window weights for every (query token, key token) pair.

    centres: (N,) or (B, N) token centres in [0, 1]; widths: K relative widths.
    Returns (K, N, N) or (B, K, N, N): entry [k, i, j] = -(c_j - c_i)^2 / (2 (w_k / 9)^2).
    """
    sigma = torch.tensor(widths, dtype=centres.dtype, device=centres.device) / GAUSS_WIDTH_DIVISOR
    diff = centres.unsqueeze(-1) - centres.unsqueeze(-2)  # (..., N, N)
    return -(diff.unsqueeze(-3) ** 2) / (2 * sigma.view(-1, 1, 1) ** 2)  # (..., K, N, N)


def key_bias(key_padding_mask: torch.Tensor | None, sizes: torch.Tensor | None,
             dtype: torch.dtype) -> torch.Tensor | None:
    """Per-key additive bias (B, 1, 1, N): -inf on padded keys (mask False = padding) and log(size)
    of merged tokens (ToMe proportional attention), or None when neither is given."""
    bias = None
    if sizes is not None:
        bias = sizes.to(dtype).clamp_min(1e-6).log()[:, None, None, :]
    if key_padding_mask is not None:
        pad = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
        pad = pad.masked_fill(~key_padding_mask, float("-inf"))[:, None, None, :]
        bias = pad if bias is None else bias + pad
    return bias


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, n_heads * d) -> (B, n_heads, N, d)."""
    b, n, _ = x.shape
    return x.view(b, n, n_heads, -1).transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Plain multi-head self-attention with an optional key padding mask (True = valid token).

    output_projection=False drops the output linear (the authors' BertSelfAttention has none)."""

    def __init__(self, hidden: int, heads: int, dropout: float, output_projection: bool = True):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = stacked_linear(hidden, hidden, 3)  # [W_q; W_k; W_v], clipped per projection
        self.out = nn.Linear(hidden, hidden) if output_projection else nn.Identity()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                sizes: torch.Tensor | None = None) -> torch.Tensor:
        b, n, h = x.shape  # (B, N, H)
        q, k, v = (_split_heads(t, self.heads) for t in _project(self.qkv, x).chunk(3, dim=-1))
        bias = key_bias(key_padding_mask, sizes, q.dtype)  # q.dtype: also right under autocast
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        return _project(self.out, y.transpose(1, 2).reshape(b, n, h))  # (B, N, H)

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor,
                       key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Same attention on packed valid tokens: x (T, H) are the tokens where the (B, N)
        key_padding_mask is True, token_index (T,) their flat positions b * N + n. Projections run
        on the T valid tokens only; the attention itself is padded. Returns (T, H)."""
        b, n = key_padding_mask.shape
        qkv = _project(self.qkv, x)  # (T, 3H)
        padded = qkv.new_zeros(b * n, qkv.shape[1]).index_copy(0, token_index, qkv)  # (B*N, 3H)
        q, k, v = (_split_heads(t, self.heads) for t in padded.view(b, n, -1).chunk(3, dim=-1))
        bias = key_bias(key_padding_mask, None, q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b * n, -1)[token_index]  # (T, H) valid rows only
        return _project(self.out, y)


class GaussianMixtureAttention(nn.Module):
    """GMMFormer attention: one multi-head attention per Gaussian window width plus one
    unconstrained window, run in parallel, fused per token with softmax weights.

    Each window has its own query/key/value projections (as in GMMFormer); the fusion weight of
    window k at token t is softmax_k(score(o_k[t])) with a learned linear scorer shared by the
    windows, so each token chooses how local its context is. Output: (B, N, H).
    """

    def __init__(self, hidden: int, heads: int, widths: Sequence[float], dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of heads {heads}")
        if any(w <= 0 for w in widths):
            raise ValueError(f"Gaussian widths must be positive, got {tuple(widths)}")
        self.widths = tuple(float(w) for w in widths)
        self.windows = len(self.widths) + 1  # the last window has no Gaussian prior
        self.heads = heads
        self.dropout = dropout
        self.qkv = stacked_linear(hidden, hidden, 3 * self.windows)  # q, k, v of every window
        # no bias: a bias shared by every window cancels in the softmax over windows
        self.window_score = nn.Linear(hidden, 1, bias=False)
        self.out = nn.Linear(hidden, hidden)

    def window_bias(self, n_tokens: int, sizes: torch.Tensor | None, device,
                    dtype) -> torch.Tensor:
        """Gaussian log prior per window, repeated over heads: (1 or B, windows * heads, N, N)."""
        centres = uniform_centres(n_tokens, device) if sizes is None else token_centres(sizes)
        prior = gaussian_log_prior(centres.to(dtype), self.widths)  # (..., K-1, N, N)
        free = torch.zeros_like(prior[..., :1, :, :])  # unconstrained window
        prior = torch.cat([prior, free], dim=-3)  # (..., K, N, N)
        if prior.dim() == 3:
            prior = prior.unsqueeze(0)
        return prior.repeat_interleave(self.heads, dim=1)  # (1|B, K * heads, N, N)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                sizes: torch.Tensor | None = None) -> torch.Tensor:
        b, n, h = x.shape  # (B, N, H)
        k_win = self.windows
        q, k, v = (_split_heads(t, k_win * self.heads) for t in _project(self.qkv, x).chunk(3, dim=-1))
        bias = self.window_bias(n, sizes, x.device, q.dtype)  # q.dtype: also right under autocast
        extra = key_bias(key_padding_mask, sizes, q.dtype)  # (B, 1, 1, N) or None
        if extra is not None:
            bias = bias + extra
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        # (B, K * heads, N, d) -> (B, N, K, H): window k's multi-head output at each token
        y = y.view(b, k_win, self.heads, n, -1).permute(0, 3, 1, 2, 4).reshape(b, n, k_win, h)
        weights = self.window_score(y).softmax(dim=2)  # (B, N, K, 1)
        return _project(self.out, (weights * y).sum(dim=2))  # (B, N, H)


class FeedForward(nn.Module):
    """Position-wise MLP H -> 4H -> H."""

    def __init__(self, hidden: int, dropout: float, expansion: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, expansion * hidden), nn.ReLU(),
                                 Dropout(dropout), nn.Linear(expansion * hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        first, last = self.net[0], self.net[3]  # eval: dropout is the identity
        return _project(last, inference_linear(x, first.weight, first.bias, relu=True))


_ONEDNN_LINEAR: dict[torch.dtype, bool] = {}  # probed per dtype on first use: a private op of torch (inductor's)


def _onednn_linear_usable(dtype: torch.dtype = torch.float32) -> bool:
    """Whether torch.ops.mkldnn._linear_pointwise exists here for `dtype` and agrees with F.linear.

    Probed per dtype: oneDNN's bfloat16 inner product needs AVX-512 (a CPU with only AVX2 raises
    "could not create a primitive descriptor"), while its float32 one runs everywhere."""
    if dtype not in _ONEDNN_LINEAR:
        try:
            # fixed values, not torch.randn: the probe must not move the global RNG (training's dropout)
            x = torch.linspace(-1, 1, 15).view(3, 5).to(dtype)
            w, b = torch.linspace(1, -0.5, 20).view(4, 5).to(dtype), torch.linspace(-0.2, 0.3, 4).to(dtype)
            with torch.autocast("cpu", enabled=False):  # the probe compares `dtype` with `dtype`
                out = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
                tolerance = 1e-5 if dtype == torch.float32 else 2e-2
                _ONEDNN_LINEAR[dtype] = bool(torch.allclose(out.float(), F.linear(x, w, b).relu().float(),
                                                            atol=tolerance))
        except (AttributeError, RuntimeError, NotImplementedError):
            _ONEDNN_LINEAR[dtype] = False
    return _ONEDNN_LINEAR[dtype]


def inference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     relu: bool = False) -> torch.Tensor:
    """F.linear(x, weight, bias) (then ReLU with `relu`) outside autograd: (..., D) -> (..., O).

    On CPU without a gradient this is oneDNN's linear with the bias and ReLU fused: in float32, or
    under CPU bfloat16 autocast in bfloat16 (x, weight and bias cast to bfloat16 as autocast casts
    them for F.linear; the output is bfloat16 like autocast's) where the CPU has oneDNN's bfloat16
    kernel. Elsewhere F.linear. The float32 paths
    differ by float32 rounding; the bfloat16 ones use the same oneDNN kernel (F.linear also adds the
    bias by a separate copy, a tenth of the product's time at the paper's shapes)."""
    if torch.is_grad_enabled() or x.device.type != "cpu" or not _onednn_linear_usable():
        return _plain_linear(x, weight, bias, relu)
    if torch.is_autocast_enabled("cpu"):
        if (torch.get_autocast_dtype("cpu") != torch.bfloat16 or weight.dtype != torch.float32
                or x.dtype not in (torch.float32, torch.bfloat16) or not _onednn_linear_usable(torch.bfloat16)):
            return _plain_linear(x, weight, bias, relu)
        x, weight = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        bias = None if bias is None else bias.to(torch.bfloat16)
    elif x.dtype != torch.float32 or weight.dtype != torch.float32:
        return _plain_linear(x, weight, bias, relu)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")


def _plain_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    out = F.linear(x, weight, bias)
    return out.relu_() if relu else out


def _project(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """linear(x); an nn.Linear outside autograd goes through `inference_linear` (oneDNN on CPU)."""
    if isinstance(linear, nn.Linear) and not torch.is_grad_enabled():
        return inference_linear(x, linear.weight, linear.bias)
    return linear(x)


def checkpointed(layer: nn.Module, forward, *args):
    """forward(*args); when layer.activation_checkpointing is set and autograd records, its
    activations are recomputed in the backward pass (torch.utils.checkpoint, use_reentrant=False,
    RNG state preserved: the same dropout masks, so the same loss and gradients)."""
    if getattr(layer, "activation_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False)
    return forward(*args)


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Turn recomputation on in every layer of `model` whose class supports it (declares
    `activation_checkpointing`); returns how many layers. 0: the model has no such layer."""
    layers = [m for m in model.modules() if hasattr(type(m), "activation_checkpointing")]
    for layer in layers:
        layer.activation_checkpointing = True
    return len(layers)


class TransformerLayer(nn.Module):
    """Post-norm layer around any attention module: x = LN(x + attn(x)); x = LN(x + FFN(x)).
    `forward` supports activation checkpointing (`enable_activation_checkpointing`)."""

    activation_checkpointing = False

    def __init__(self, attention: nn.Module, hidden: int, dropout: float):
        super().__init__()
        self.attention = attention
        self.ffn = FeedForward(hidden, dropout)
        self.norm1 = nn.LayerNorm(hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                sizes: torch.Tensor | None = None) -> torch.Tensor:
        return checkpointed(self, self._forward, x, key_padding_mask, sizes)  # (B, N, H)

    def _forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None,
                 sizes: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attention(x, key_padding_mask=key_padding_mask,
                                                    sizes=sizes)))
        return self.norm2(x + self.drop(self.ffn(x)))  # (B, N, H)

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor,
                       key_padding_mask: torch.Tensor) -> torch.Tensor:
        """The layer on packed valid tokens (T, H); see `MultiHeadAttention.forward_packed`."""
        attended = self.attention.forward_packed(x, token_index, key_padding_mask)
        x = self.norm1(x + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x)))  # (T, H)


class AttentionPooling(nn.Module):
    """Weighted mean of tokens with learned per-token scores; padded tokens get weight 0.
    (The scorer's bias cancels in the softmax; bias=False as in the authors' code.)"""

    def __init__(self, hidden: int, bias: bool = True):
        super().__init__()
        self.score = nn.Linear(hidden, 1, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.score(x).squeeze(-1)  # (B, N)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        weights = logits.softmax(dim=-1)  # (B, N)
        return torch.einsum("bn,bnh->bh", weights, x)  # (B, H)

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """Pooling of packed valid tokens x (T, H) at flat positions token_index of the (B, N)
        mask (True = valid): the same weights as `forward`, summed per row. Returns (B, H)."""
        b, n = mask.shape
        logits = self.score(x).squeeze(-1)  # (T,)
        full = logits.new_full((b * n,), float("-inf")).index_copy(0, token_index, logits)
        weights = full.view(b, n).softmax(dim=-1).view(-1)[token_index]  # (T,)
        rows = torch.div(token_index, n, rounding_mode="floor")  # (T,) owner of each token
        return x.new_zeros(b, x.shape[1]).index_add(0, rows, weights[:, None] * x)  # (B, H)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT-style init used by the GMMFormer family: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


__all__ = ["AttentionPooling", "FeedForward", "GaussianMixtureAttention", "MultiHeadAttention",
           "TransformerLayer", "checkpointed", "enable_activation_checkpointing", "gaussian_log_prior",
           "inference_linear", "init_weights", "key_bias", "token_centres", "uniform_centres",
           "GAUSS_WIDTH_DIVISOR"]
