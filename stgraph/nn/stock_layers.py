"""The layers of Stockformer (Ma, Xue, Lu, Chen, "Stockformer: A Price-Volume Factor Stock
Selection Model Based on Wavelet Transform and Multi-Task Self-Attention Networks", arXiv
2401.06139), a dual-frequency encoder after STWave; the model is `stgraph.models.stockformer`.

Tensors are ``[B, T, N, D]`` (dates, days, stocks, channels). Every layer is batched over all
stocks and days at once: temporal attention runs on ``[B*N, T, D]``, spatial attention on
``[B*T, N, D]`` and the kernel-2 convolution is one GEMM over ``[B*T*N, 2D]``. Layer norms have no
affine parameters, as in the official code.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from stgraph.errors import InputError
from stgraph.nn.attention import MultiHeadAttention
from stgraph.nn.dropout import relu_dropout


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers of the given sizes with a ReLU between consecutive ones."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:])


class DualStartEmbedding(nn.Module):
    """``FF_low([low, extra, factors])`` and ``FF_high([high, extra, factors])``, each
    ``Linear(1 + E + F -> D)``, ReLU, ``Linear(D -> D)``.

    The factors are shared by both branches, so their part of both first layers is one GEMM over
    the stacked weights and the ``[.., 1 + E + F]`` inputs are never built.
    """

    def __init__(self, num_factors: int, num_extra: int, dim: int) -> None:
        super().__init__()
        self.num_extra = num_extra
        self.low = mlp((1 + num_extra + num_factors, dim, dim))
        self.high = mlp((1 + num_extra + num_factors, dim, dim))

    def forward(
        self, low: torch.Tensor, high: torch.Tensor, extra: torch.Tensor, factors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``low``, ``high`` ``[B, T, N]``, ``extra`` ``[B, T, N, E]``, ``factors``
        ``[B, T, N, F]`` -> two ``[B, T, N, D]``."""
        cut = 1 + self.num_extra
        first_l, first_h = self.low[0], self.high[0]
        shared = F.linear(factors, torch.cat([first_l.weight[:, cut:], first_h.weight[:, cut:]]))
        part_l, part_h = shared.chunk(2, dim=-1)
        head_l = torch.cat([low.unsqueeze(-1), extra], dim=-1)
        head_h = torch.cat([high.unsqueeze(-1), extra], dim=-1)
        h_l = part_l + F.linear(head_l, first_l.weight[:, :cut], first_l.bias)
        h_h = part_h + F.linear(head_h, first_h.weight[:, :cut], first_h.bias)
        return self.low[2](F.relu(h_l)), self.high[2](F.relu(h_h))


class CalendarEncoding(nn.Module):
    """``FF(one_hot(c0) ⊕ one_hot(c1))``: ``Linear(s0 + s1 -> D)``, ReLU, ``Linear(D -> D)``,
    the first layer read as two embedding look-ups (the same numbers without the one-hot).

    Args:
        sizes: the number of values of each code.
        dim: output width ``D``.
        wrap: take each code modulo its size (the official code's ``TE mod 5``, ``TE mod 50``);
            otherwise a code out of ``[0, size)`` is an error.
    """

    def __init__(self, sizes: tuple[int, int], dim: int, wrap: bool) -> None:
        super().__init__()
        if min(sizes) < 1:
            raise ValueError(f"calendar sizes must be >= 1, got {sizes}")
        self.sizes = (int(sizes[0]), int(sizes[1]))
        self.wrap = wrap
        self.ff = mlp((sum(self.sizes), dim, dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` ``[B, S, 2]`` int -> ``[B, S, 1, D]`` (broadcast over stocks)."""
        s0, s1 = self.sizes
        c0, c1 = codes[..., 0].long(), codes[..., 1].long()
        if self.wrap:
            c0, c1 = c0 % s0, c1 % s1
        elif bool(((c0 < 0) | (c0 >= s0) | (c1 < 0) | (c1 >= s1)).any()):
            raise InputError(
                f"inputs.calendar: codes must lie in [0, {s0}) and [0, {s1}) "
                "(StockContext.calendar_sizes)."
            )
        first = self.ff[0]
        table = first.weight.t()  # [s0 + s1, D]
        h = table[c0] + table[c1 + s0] + first.bias
        return self.ff[2](F.relu(h)).unsqueeze(2)


class TemporalAttentionBlock(nn.Module):
    """The low branch's temporal layer: ``x += te``; causal multi-head self-attention over the
    days of each stock; ``LN(attn + x)``; ``LN(FF(h) + h)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads)
        self.ff = mlp((dim, dim, dim))

    def forward(self, x: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
        x = x + te
        a = self.attn(x.transpose(1, 2), is_causal=True).transpose(1, 2)
        h = _norm(a + x)
        return _norm(self.ff(h) + h)


class CausalConv(nn.Module):
    """The high branch's temporal layer: a causal convolution of kernel 2 (day ``t`` reads days
    ``t-1`` and ``t``, zero before the window), ReLU and dropout; no residual."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * dim, dim)  # the [D, D, 1, 2] kernel as [previous, current]
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        previous = F.pad(x[:, :-1], (0, 0, 0, 0, 1, 0))
        out = self.linear(torch.cat([previous, x], dim=-1))
        return relu_dropout(out, self.dropout, self.training)


def copy_rows(attn: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The official code's "copy" op: stock ``j`` takes row ``i* = argmax_i attn[i, j]`` of
    ``out``, the query that attends most to it (first index on ties).

    Args:
        attn: ``[M, N, N]`` attention weights (queries x keys).
        out: ``[M, N, D]`` attention output.
    """
    source = attn.argmax(dim=-2)  # [M, N]
    return out.gather(1, source.unsqueeze(-1).expand(-1, -1, out.shape[-1]))


class SpatialAttentionBlock(nn.Module):
    """Attention over the stocks of each day: ``x' = x + E``; ``h = LN(attn(x') + x')``;
    ``FF(h)`` (no residual: the encoder adds the branch input).

    Args:
        dim: channels.
        heads: attention heads (1 with ``copy_op``).
        copy_op: re-index the attention output with `copy_rows` (single head, the score matrix
            is built explicitly); otherwise fused soft attention.
        dead_proj: also hold the official code's unused ``Linear(dim -> 1)`` (``proj``): it
            counts as a parameter and never gets a gradient.
    """

    def __init__(self, dim: int, heads: int, copy_op: bool, dead_proj: bool = False) -> None:
        super().__init__()
        if copy_op and heads != 1:
            raise ValueError(f"the copy op needs a single attention head, got heads={heads}")
        self.attn = MultiHeadAttention(dim, heads)
        self.ff = mlp((dim, dim, dim))
        self.copy_op = copy_op
        if dead_proj:
            self.proj = nn.Linear(dim, 1)

    def forward(
        self, x: torch.Tensor, position: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``x`` ``[B, T, N, D]``, ``position`` ``[N, D]``, ``key_mask`` ``[B*T, 1, 1, N]`` bool
        (True: the stock may be attended to) or None."""
        x = x + position
        if self.copy_op:
            a = self._copy_attention(x, key_mask)
        else:
            a = self.attn(x, attn_mask=key_mask)
        return self.ff(_norm(a + x))

    def _copy_attention(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, n, d = x.shape
        q, k, v = self.attn.in_proj(x.reshape(b * t, n, d)).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / math.sqrt(d)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, 0], float("-inf"))
        weights = scores.softmax(dim=-1)
        # out_proj commutes with the row copy, so it runs after it as in the official code.
        out = copy_rows(weights, weights @ v)
        return self.attn.out_proj(out).view(b, t, n, d)


class HorizonProjection(nn.Module):
    """Days ``W -> H`` by a linear map over the time axis (the official ``Conv2d(W, H, 1)`` with
    time as channels), shared by every stock and channel."""

    def __init__(self, window: int, horizon: int) -> None:
        super().__init__()
        self.linear = nn.Linear(window, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("hw,bwnd->bhnd", self.linear.weight, x)
        return out + self.linear.bias.view(1, -1, 1, 1)


class AdaptiveFusion(nn.Module):
    """Fuse the low and high streams over the ``H`` target days of each stock (single head):
    query ``Lq(low + te)``, key and value ``ReLU(L(high + te))``, causal over the days, then
    ``h = LN(Lo(attn) + low + te)`` and ``LN(FF(h) + h)``.

    ``dead_layers`` also holds the official code's unused low-stream key and value layers (they
    count as parameters and never get a gradient).
    """

    def __init__(self, dim: int, dead_layers: bool = False) -> None:
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.ff = mlp((dim, dim, dim))
        if dead_layers:
            self.key_low, self.value_low = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(
        self, low: torch.Tensor, high: torch.Tensor, te: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``low``, ``high`` ``[B, H, N, D]``, ``te`` ``[B, H, 1, D]`` -> (fused, ``low + te``)."""
        low, high = low + te, high + te
        q = self.query(low).transpose(1, 2)  # [B, N, H, D]
        k = F.relu(self.key(high)).transpose(1, 2)
        v = F.relu(self.value(high)).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        h = _norm(self.out(a) + low)
        return _norm(self.ff(h) + h), low
