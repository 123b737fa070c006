"""Multi-head attention for spatiotemporal tensors, built on the fused
`torch.nn.functional.scaled_dot_product_attention` (SDPA).

Tensors are ``[B, T, N, C]`` (batch, time, nodes, channels). Attention runs along one axis and is
batched over all the others, so "spatial" attention is attention along the node axis (``axis=-2``)
for every ``(b, t)``, and "temporal" attention is attention along the time axis (``axis=-3``) for
every ``(b, n)``. SDPA never materialises the ``[.., L, L]`` score tensor when a fused kernel
applies, which keeps full attention over a few hundred nodes cheap in memory.

Dropout is `stgraph.nn.dropout.Dropout` (a cheaper CPU mask than ``torch.nn.Dropout``).

For large graphs the node axis can be restricted to a fixed neighbourhood: each node attends only
to its ``k`` nearest nodes on the road graph (`neighbour_index`). Keys and values are gathered into
``[.., N, k, C]``, so memory grows as ``O(N k)`` instead of ``O(N^2)``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import dijkstra
from torch import nn

from stgraph.graphs.graph import Graph
from stgraph.nn.dropout import Dropout

# Without autograd the restricted attention gathers keys/values for this many elements at most at
# once (chunks over nodes), so inference on 8,000-node graphs stays within a few hundred MB.
_GATHER_BUDGET = 1 << 24


def neighbour_index(
    graph: Graph, k: int, metric: str = "hops", chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest nodes of every node on ``graph`` (itself first).

    Distances are shortest paths on the undirected version of the graph. ``hops`` counts edges;
    ``weight`` uses edge lengths ``1 / weight`` (edge weights are affinities such as Gaussian
    kernels, so a strong edge is a short one). Ties are broken by node index, so the result is
    deterministic. A node that reaches fewer than ``k`` nodes gets padding slots, marked False in
    the returned mask, which attention ignores.

    Args:
        graph: the road graph.
        k: neighbourhood size (clipped to ``num_nodes``).
        metric: ``hops`` or ``weight``.
        chunk: rows of the distance matrix computed at once (bounds memory on large graphs).

    Returns:
        ``(index, mask)``: ``[N, k]`` long node indices and ``[N, k]`` bool validity.
    """
    if metric not in ("hops", "weight"):
        raise ValueError(f"metric must be 'hops' or 'weight', got {metric!r}")
    n = graph.num_nodes
    k = min(int(k), n)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    src, dst = graph.edge_index.numpy()
    weight = graph.edge_weight.double().numpy()
    keep = (src != dst) & (weight != 0)
    src, dst, weight = src[keep], dst[keep], weight[keep]
    lengths = np.ones_like(weight) if metric == "hops" else 1.0 / np.abs(weight)
    matrix = sp.coo_matrix((lengths, (src, dst)), shape=(n, n)).tocsr()
    index = np.empty((n, k), dtype=np.int64)
    valid = np.empty((n, k), dtype=bool)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        dist = dijkstra(matrix, directed=False, indices=rows)
        # The node itself first even when zero-length edges tie with it.
        dist[np.arange(len(rows)), rows] = -1.0
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        index[rows] = order
        valid[rows] = np.isfinite(np.take_along_axis(dist, order, axis=1))
    return torch.from_numpy(index), torch.from_numpy(valid)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention along one axis of ``[..., L, C]``, batched over the rest.

    The projections are the same for full and neighbourhood-restricted attention, so one set of
    weights can run either way.

    Args:
        dim: channels C (input and output).
        num_heads: heads; ``dim`` must be divisible by it.
        dropout: dropout on the attention weights (training only).
        bias: bias in the projections.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        # One fused projection for Q, K and V: one GEMM instead of three.
        self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        neighbours: torch.Tensor | None = None,
        neighbour_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend along the second-to-last axis of ``x``.

        Args:
            x: ``[..., L, C]``.
            attn_mask: optional ``[L, L]`` bool (True = may attend) or additive float mask, for
                full attention.
            is_causal: each position attends only to itself and earlier ones (full attention).
            neighbours: optional ``[L, k]`` index: position ``i`` attends only to
                ``neighbours[i]``.
            neighbour_mask: optional ``[L, k]`` bool, False for padding slots of ``neighbours``.

        Returns:
            ``[..., L, C]``.
        """
        *lead, length, _ = x.shape
        h, d = self.num_heads, self.head_dim
        qkv = self.in_proj(x.reshape(-1, length, self.dim))  # [M, L, 3C]
        p = self.dropout if self.training else 0.0
        if neighbours is None:
            # Chunks, not a [3, ...] permute: SDPA returns its gradients laid out as [M, L, h, d],
            # so each flows back to its chunk without a copy and the chunks join in one cat.
            q, k, v = (part.unflatten(-1, (h, d)).transpose(1, 2) for part in qkv.chunk(3, -1))
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal
            )
            out = out.transpose(1, 2)  # [M, L, h, d]
        else:
            qkv = qkv.view(-1, length, 3, h, d)
            out = _neighbour_attention(qkv, neighbours, neighbour_mask, p)
        return self.out_proj(out.reshape(*lead, length, self.dim))


def _neighbour_attention(
    qkv: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None, dropout: float
) -> torch.Tensor:
    """``qkv [M, L, 3, h, d]`` -> ``[M, L, h, d]``, each position attending to ``index[i]``."""
    m, length, _, h, d = qkv.shape
    k_slots = index.shape[1]
    q, k, v = qkv.unbind(2)  # each [M, L, h, d]
    if mask is not None and bool(mask.all()):
        mask = None
    # Chunk over positions only when no graph is recorded; with autograd the gathered keys are
    # kept for the backward pass anyway.
    step = length
    if not torch.is_grad_enabled():
        step = max(1, min(length, _GATHER_BUDGET // max(1, 2 * m * k_slots * h * d)))
    outs = []
    for start in range(0, length, step):
        rows = slice(start, start + step)
        idx = index[rows]  # [rows, k]
        count = idx.shape[0]
        flat = idx.reshape(-1)
        # Gather after projecting: O(N k C) memory, never O(N^2).
        kg = k.index_select(1, flat).view(m, count, k_slots, h, d).permute(0, 1, 3, 2, 4)
        vg = v.index_select(1, flat).view(m, count, k_slots, h, d).permute(0, 1, 3, 2, 4)
        qs = q[:, rows].unsqueeze(3)  # [M, rows, h, 1, d]
        bias = None
        if mask is not None:
            bias = mask[rows].view(count, 1, 1, k_slots)
        out = F.scaled_dot_product_attention(qs, kg, vg, attn_mask=bias, dropout_p=dropout)
        outs.append(out.squeeze(3))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class TransformerBlock(nn.Module):
    """A standard transformer encoder layer (attention, FFN, residuals, LayerNorm, dropout) that
    attends along one axis of its input.

    With ``norm_first=False`` (the default, BERT/"post-norm" as in the STTN release):
    ``y = LN(x + Drop(Attn(x)))``, ``out = LN(y + Drop(FFN(y)))``. With ``norm_first=True`` the
    norms move inside the residual branches (pre-norm), which trains deeper stacks more stably.

    Args:
        dim: channels C.
        num_heads: attention heads.
        ffn_dim: hidden width of the feed-forward net (default ``2 * dim``).
        dropout: dropout on the attention output and the FFN output (and on the attention
            weights unless ``attention_dropout`` is given).
        axis: the axis of the input attended along (channels are always last): ``-2`` is the
            node axis of ``[B, T, N, C]`` (spatial), ``-3`` its time axis (temporal).
        norm_first: pre-norm instead of post-norm.
        activation: ``relu`` or ``gelu`` in the FFN.
        attention_dropout: dropout on the attention weights (default: ``dropout``). On CPU any
            non-zero value makes SDPA fall back to its unfused kernel, which materialises the
            ``[.., L, L]`` weights.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        axis: int = -2,
        norm_first: bool = False,
        activation: str = "relu",
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        if axis >= -1:
            raise ValueError("axis must be negative and not the channel axis (-1)")
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        ffn_dim = ffn_dim or 2 * dim
        self.axis = axis
        self.norm_first = norm_first
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.attention = MultiHeadAttention(dim, num_heads, attention_dropout)
        # No dropout inside the FFN: as in BERT and the STTN release, only its output is dropped.
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Linear(ffn_dim, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop1 = Dropout(dropout)
        self.drop2 = Dropout(dropout)

    def _attend(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.axis == -2:
            return self.attention(x, **kwargs)
        moved = x.movedim(self.axis, -2)
        return self.attention(moved, **kwargs).movedim(-2, self.axis)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        neighbours: torch.Tensor | None = None,
        neighbour_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [..., C]`` -> same shape; the keyword arguments go to `MultiHeadAttention`."""
        kwargs = {
            "attn_mask": attn_mask,
            "is_causal": is_causal,
            "neighbours": neighbours,
            "neighbour_mask": neighbour_mask,
        }
        if self.norm_first:
            x = x + self.drop1(self._attend(self.norm1(x), **kwargs))
            return x + self.drop2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop1(self._attend(x, **kwargs)))
        return self.norm2(x + self.drop2(self.ffn(x)))
