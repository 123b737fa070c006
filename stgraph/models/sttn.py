"""STTN: Spatial-Temporal Transformer Networks (Xu et al., "Spatial-Temporal Transformer Networks
for Traffic Flow Forecasting", arXiv:2001.02908).

Two registered models:

- ``sttn``: the paper's design. Multi-head spatial attention over nodes fused with a fixed-graph
  Chebyshev branch through a learned gate, followed by temporal attention over the window, in
  ``num_layers`` stacked spatial-temporal blocks, with graph (Laplacian) and temporal positional
  encodings and a direct multi-step output head.
- ``sttn-faithful``: the released TensorFlow code (xumingxingsjtu/STTN at ``d24f8d3``): one
  block, one head, ``ReLU(S + R + 0.1 G)`` instead of the gate, concatenated learnable ``N x N``
  and ``T x T`` positional tables, a one-step head trained alone and rolled out autoregressively.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from stgraph.config import option
from stgraph.errors import InputError
from stgraph.graphs.normalize import scaled_laplacian
from stgraph.models.base import MODELS, ForecastModel, ModelConfig
from stgraph.nn.attention import TransformerBlock, neighbour_index
from stgraph.nn.dropout import Dropout
from stgraph.nn.encodings import (
    CalendarEmbedding,
    LaplacianEncoding,
    LearnablePositionalEncoding,
    NodeEmbedding,
    SinusoidalPositionalEncoding,
)
from stgraph.nn.graph_conv import ChebConv, GatedFusion
from stgraph.tasks.forecast import ForecastContext, ForecastInputs

SPATIAL_ENCODINGS = ("laplacian", "learnable", "none")
TEMPORAL_ENCODINGS = ("learnable", "sinusoidal", "none")


@dataclass
class SttnConfig(ModelConfig):
    embed_dim: int = option(64, "Channels of every block.")
    num_layers: int = option(3, "Stacked spatial-temporal blocks.")
    num_heads: int = option(2, "Attention heads (spatial and temporal).")
    ffn_dim: int = option(128, "Hidden width of the transformer feed-forward nets.")
    cheb_order: int = option(3, "Chebyshev terms K of the fixed-graph branch (0 disables it).")
    dropout: float = option(
        0.0,
        "Dropout on the attention and feed-forward outputs, the graph branch and the head "
        "(0 as in LibCity's STTN; the TF release uses 0.1).",
    )
    attention_dropout: float = option(
        0.0, "Dropout on attention weights (> 0 disables the fused attention kernel on CPU)."
    )
    spatial_encoding: str = option("laplacian", "Node encoding: laplacian, learnable or none.")
    laplacian_dim: int = option(16, "Laplacian eigenvectors projected by the laplacian encoding.")
    temporal_encoding: str = option("learnable", "Window positions: learnable, sinusoidal, none.")
    calendar: bool = option(True, "Add time-of-day and day-of-week embeddings.")
    mask_channel: bool = option(True, "Give the observed-mask to the model as an input channel.")
    spatial_neighbours: int | None = option(
        None, "Spatial attention only over the k nearest nodes (None = all nodes)."
    )
    neighbour_metric: str = option("hops", "Distance for spatial_neighbours: hops or weight.")
    head_dim: int = option(256, "Hidden width of the direct multi-step output head.")
    checkpoint: bool = option(
        False, "Recompute each block in the backward pass (less memory, about 1/3 more compute)."
    )


class _SttnBlock(nn.Module):
    """Spatial transformer (attention gated with a Chebyshev branch), then temporal transformer."""

    def __init__(self, config: SttnConfig, operator) -> None:
        super().__init__()
        d = config.embed_dim
        heads, ffn, p = config.num_heads, config.ffn_dim, config.dropout
        p_attn = config.attention_dropout
        self.spatial = TransformerBlock(d, heads, ffn, p, -2, attention_dropout=p_attn)
        self.temporal = TransformerBlock(d, heads, ffn, p, -3, attention_dropout=p_attn)
        self.cheb = ChebConv(d, d, operator, config.cheb_order) if operator is not None else None
        if self.cheb is not None:
            self.graph_norm = nn.LayerNorm(d)
            self.graph_drop = Dropout(config.dropout)
            self.gate = GatedFusion(d)

    def forward(self, h: torch.Tensor, neighbours=None, neighbour_mask=None) -> torch.Tensor:
        y_s = self.spatial(h, neighbours=neighbours, neighbour_mask=neighbour_mask)
        if self.cheb is not None:
            # The graph branch gets the same residual + norm as the attention branch, so the gate
            # mixes two representations on one scale and neither branch loses the input.
            y_g = self.graph_norm(h + self.graph_drop(torch.relu(self.cheb(h))))
            y_s = self.gate(y_s, y_g)
        return self.temporal(y_s)


@MODELS.register("sttn")
class Sttn(ForecastModel):
    """STTN as described in the paper (Xu et al., arXiv:2001.02908), with a direct output head.

    Input lift (values, and the observed-mask as a channel) -> + calendar, temporal and spatial
    encodings -> ``num_layers`` ST blocks -> a head mapping each node's whole window to all
    ``horizon`` steps at once. Each ST block: ``Y_s`` = multi-head attention over nodes (+FFN),
    ``Y_g`` = Chebyshev convolution on the fixed graph, ``g = sigmoid(W_s Y_s + W_g Y_g + b)``,
    ``Y = g Y_s + (1-g) Y_g``, then multi-head attention over the window (+FFN) per node.

    Choices not fixed by the paper: post-norm (BERT) transformer layers as in the release; the
    graph branch is wrapped as ``LN(X + ReLU(Cheb(X)))``; the Laplacian encoding uses the
    ``laplacian_dim`` smallest non-trivial eigenvectors (sorted ``eigh``) through a linear map.
    ``spatial_neighbours = k`` restricts spatial attention to each node's k nearest nodes, which
    makes graphs of thousands of nodes fit in memory.
    """

    config_class = SttnConfig

    def __init__(self, config: SttnConfig, context: ForecastContext) -> None:
        super().__init__(config, context)
        if config.spatial_encoding not in SPATIAL_ENCODINGS:
            raise InputError(f"sttn: spatial_encoding must be one of {SPATIAL_ENCODINGS}.")
        if config.temporal_encoding not in TEMPORAL_ENCODINGS:
            raise InputError(f"sttn: temporal_encoding must be one of {TEMPORAL_ENCODINGS}.")
        d, n, w = config.embed_dim, context.num_nodes, context.window
        self.lift = nn.Linear(context.in_channels * (2 if config.mask_channel else 1), d)
        self.calendar = CalendarEmbedding(context.steps_per_day, d) if config.calendar else None
        if config.temporal_encoding == "learnable":
            self.time_encoding = LearnablePositionalEncoding(w, d)
        elif config.temporal_encoding == "sinusoidal":
            self.time_encoding = SinusoidalPositionalEncoding(w, d)
        else:
            self.time_encoding = None
        if config.spatial_encoding == "laplacian":
            self.node_encoding = LaplacianEncoding.from_graph(
                context.graph, config.laplacian_dim, d
            )
        elif config.spatial_encoding == "learnable":
            self.node_encoding = NodeEmbedding(n, d)
        else:
            self.node_encoding = None
        operator = scaled_laplacian(context.graph) if config.cheb_order > 0 else None
        self.blocks = nn.ModuleList(_SttnBlock(config, operator) for _ in range(config.num_layers))
        if config.spatial_neighbours is not None:
            index, valid = neighbour_index(
                context.graph, config.spatial_neighbours, config.neighbour_metric
            )
            self.register_buffer("neighbours", index, persistent=False)
            self.register_buffer("neighbour_mask", valid, persistent=False)
        else:
            self.neighbours = self.neighbour_mask = None
        self.head = nn.Sequential(
            nn.Linear(w * d, config.head_dim),
            nn.ReLU(),
            Dropout(config.dropout),
            nn.Linear(config.head_dim, context.horizon * context.out_channels),
        )

    def forward(self, inputs: ForecastInputs) -> torch.Tensor:
        x, mask = inputs.x, inputs.x_mask
        b, _, n, _ = x.shape
        # Unobserved inputs carry no information whatever value they hold.
        x = x.masked_fill(~mask, 0.0)
        if self.config.mask_channel:
            x = torch.cat([x, mask.to(x.dtype)], dim=-1)
        h = self.lift(x)
        # All additive encodings summed on their small shapes first, then one broadcast add.
        enc = torch.zeros(1, 1, 1, h.shape[-1], dtype=h.dtype, device=h.device)
        if self.calendar is not None:
            enc = enc + self.calendar(inputs.x_tod, inputs.x_dow)[:, :, None]
        if self.time_encoding is not None:
            enc = enc + self.time_encoding()[None, :, None]
        if self.node_encoding is not None:
            enc = enc + self.node_encoding()[None, None]
        h = h + enc
        for block in self.blocks:
            if self.config.checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, self.neighbours, self.neighbour_mask, use_reentrant=False)
            else:
                h = block(h, self.neighbours, self.neighbour_mask)
        out = self.head(h.transpose(1, 2).reshape(b, n, -1))  # [B, N, H*F]
        return out.view(b, n, self.context.horizon, -1).transpose(1, 2)


# Not derived from SttnConfig: the release is another architecture (one block, one head, no
# calendar, no encodings or neighbourhoods to choose), so most SttnConfig fields would be accepted
# here and do nothing. The names both have (embed_dim, ffn_dim, cheb_order, dropout, head_dim)
# default to the release's values, and dropout here covers the transformer layers only.
@dataclass
class SttnFaithfulConfig(ModelConfig):
    lift_dim: int = option(32, "Channels of the 1x1 input lift (release: 32).")
    embed_dim: int = option(64, "Channels of the ST block (release: blocks = [[64, 64]]).")
    ffn_dim: int = option(128, "Transformer feed-forward width (release: 128).")
    cheb_order: int = option(3, "Chebyshev terms Ks (release: 3).")
    graph_weight: float = option(0.1, "Fixed weight of the Chebyshev branch (release: 0.1).")
    dropout: float = option(0.1, "Transformer dropout (release: 0.1).")
    head_dim: int = option(512, "Hidden width of the output head (release: 512).")
    head_dropout: float = option(0.2, "Dropout in the output head (release: keep_prob 0.8).")
    spatial_table_init: str = option(
        "eigenvectors",
        "Init of the N x N spatial table: eigenvectors (of L~, as main.py intends) or normal.",
    )


class _PerNodeBias(nn.Module):
    """``x [..., N, C] + b [N, C]``: the release's 1x1 convs with one bias per node."""

    def __init__(self, num_nodes: int, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_nodes, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


@MODELS.register("sttn-faithful")
class SttnFaithful(ForecastModel):
    """STTN as released (xumingxingsjtu/STTN, TensorFlow, ``d24f8d3``) for Xu et al.,
    arXiv:2001.02908; see ``specs/sttn.md`` sections 4 and 8.

    Architecture: 1x1 lift to 32 channels; concatenate a learnable ``N x N`` spatial table and a
    ``T x T`` temporal table (channels ``32 + N + T``); spatial layer
    ``Y = ReLU(S + R + 0.1 G)`` with ``S`` a one-head BERT layer over nodes (on a 1x1 projection
    to 64), ``R`` a 1x1 residual and ``G`` a Chebyshev GCN (K = 3) on the fixed graph; temporal
    layer: concatenate a second ``T x T`` table, ``ReLU(BERT_time(P(Z)) + R(Z))``; LayerNorm over
    (N, C) jointly; output: a temporal conv spanning the window (ReLU, residual from the last
    step), LayerNorm(N, C), 1x1 conv 64 -> 512 with per-node bias, dropout, 1x1 conv 512 -> F with
    per-node bias (no activation between, as released).

    Deviations from the paper (all as in the release): one attention head instead of multi-head;
    a fixed ``0.1`` weight on the graph branch instead of the learned gate; one ST block instead
    of a stack; learnable concatenated positional tables instead of graph-based encodings; no
    calendar features; one-step training with an autoregressive roll-out instead of a direct
    long-term forecast.

    Deviations from the release (documented choices):
    - The release initialises the tables from collections that are never set (a misspelled
      ``intial_spatial_embeddings``), so its init is undefined. Here the spatial table starts as
      the eigenvectors of the scaled Laplacian ``L~`` (``eigh``, ascending), the ``[N, N]``
      version of what ``main.py`` computes, and the two temporal tables start as the identity
      (one-hot positions), so every position is distinguishable from the first step.
    - The concatenation is computed without materialising ``[B, T, N, 32 + N + T]``: a linear
      map (or Chebyshev conv) of a concatenation is the sum of the maps of its parts, and the
      tables' parts are computed once on ``[N, ...]`` / ``[T, ...]``. Outputs are identical.
    - The roll-out feeds each prediction back as the newest input frame; with more input than
      target channels the other channels of the new frame repeat the last observed frame.
    - Training behaviour: in ``train()`` mode ``forward`` returns ``[B, 1, N, F]`` (the next step
      only; `ForecastTask.loss` scores it against the first target step). In ``eval()`` mode it
      rolls out ``horizon`` steps. The release's recipe (RMSprop, staircase decay, 50 epochs)
      is the ``sttn-faithful`` preset of the los-loop, metr-la and pems-bay pipelines.
    - L2 term: the release's loss adds ``1e-3 * sum ||W||^2 / 2`` over the kernels of its conv
      and Chebyshev layers only (the lift, the residual and projection 1x1 convs of both layers,
      the output conv and the two head convs; not the transformer's dense layers, biases, norms or
      tables). The presets approximate it with a weight decay of 1e-3 on every parameter.
    """

    config_class = SttnFaithfulConfig

    def __init__(self, config: SttnFaithfulConfig, context: ForecastContext) -> None:
        super().__init__(config, context)
        if config.spatial_table_init not in ("eigenvectors", "normal"):
            raise InputError("sttn-faithful: spatial_table_init must be eigenvectors or normal.")
        if context.out_channels > context.in_channels:
            raise InputError("sttn-faithful feeds predictions back: out_channels > in_channels.")
        n, w = context.num_nodes, context.window
        lift, d = config.lift_dim, config.embed_dim
        laplacian = scaled_laplacian(context.graph)
        if config.spatial_table_init == "eigenvectors":
            spatial = torch.linalg.eigh(laplacian.to_dense().double())[1].float()
        else:
            spatial = torch.randn(n, n) / n**0.5
        self.spatial_table = nn.Parameter(spatial)
        self.time_table = nn.Parameter(torch.eye(w))
        self.time_table2 = nn.Parameter(torch.eye(w))
        self.lift = nn.Linear(context.in_channels, lift)
        wide = lift + n + w  # width of the concatenated spatial-layer input
        self._parts = (lift, n, w)
        # Spatial layer: residual R, projection into the transformer, Chebyshev branch G.
        self.spatial_res = nn.Linear(wide, d)
        self.spatial_proj = nn.Linear(wide, d)
        self.cheb = ChebConv(wide, d, laplacian, config.cheb_order)
        self.spatial = TransformerBlock(d, 1, config.ffn_dim, config.dropout, axis=-2)
        # Temporal layer on [Y, E_t2] (d + T channels).
        self.temporal_res = nn.Linear(d + w, d)
        self.temporal_proj = nn.Linear(d + w, d)
        self.temporal = TransformerBlock(d, 1, config.ffn_dim, config.dropout, axis=-3)
        self.block_norm = nn.LayerNorm([n, d])
        # Output layer: a conv over the whole window is a linear map of the flattened window.
        self.out_conv = nn.Linear(w * d, d)
        self.out_norm = nn.LayerNorm([n, d])
        self.fc1 = nn.Linear(d, config.head_dim, bias=False)
        self.fc1_bias = _PerNodeBias(n, config.head_dim)
        self.head_drop = Dropout(config.head_dropout)
        self.fc2 = nn.Linear(config.head_dim, context.out_channels, bias=False)
        self.fc2_bias = _PerNodeBias(n, context.out_channels)

    def _wide_linear(self, layer: nn.Linear, h: torch.Tensor, table_out: torch.Tensor):
        """``layer([h, E_s, E_t])`` with the table parts precomputed in ``table_out [T, N, d]``."""
        lift = self._parts[0]
        return nn.functional.linear(h, layer.weight[:, :lift]) + table_out

    def _table_terms(self, layer: nn.Linear) -> torch.Tensor:
        """``[T, N, d]``: the contribution of the spatial and temporal tables (and the bias)."""
        lift, n, _ = self._parts
        weight = layer.weight
        spatial = self.spatial_table @ weight[:, lift : lift + n].T  # [N, d]
        temporal = self.time_table @ weight[:, lift + n :].T  # [T, d]
        return temporal[:, None] + spatial[None] + layer.bias

    def _cheb_wide(self, h: torch.Tensor) -> torch.Tensor:
        """``Cheb([h, E_s, E_t])`` without building the concatenation."""
        lift, n, w = self._parts
        order = self.cheb.order
        theta = self.cheb.weight.view(order, lift + n + w, -1)
        out = self.cheb.basis(h) @ theta[:, :lift].reshape(order * lift, -1)
        spatial = self.cheb.basis(self.spatial_table) @ theta[:, lift : lift + n].reshape(
            order * n, -1
        )  # [N, d]
        # The temporal table is constant over nodes: T_k(L~) applied to it is (T_k 1) E_t[t].
        ones = torch.ones(n, 1, dtype=h.dtype, device=h.device)
        node_terms = self.cheb.basis(ones)  # [N, K]
        per_order = torch.einsum("tc,kcd->tkd", self.time_table, theta[:, lift + n :])
        temporal = torch.einsum("nk,tkd->tnd", node_terms, per_order)  # [T, N, d]
        return out + spatial + temporal + self.cheb.bias

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One-step forecast: ``x [B, T, N, F_in]`` (scaled) -> ``[B, 1, N, F_out]``."""
        b, w, n, _ = x.shape
        h = self.lift(x)
        res = self._wide_linear(self.spatial_res, h, self._table_terms(self.spatial_res))
        proj = self._wide_linear(self.spatial_proj, h, self._table_terms(self.spatial_proj))
        graph = self._cheb_wide(h)
        y = torch.relu(self.spatial(proj) + res + self.config.graph_weight * graph)
        # Temporal layer on [y, E_t2]: the table's part of each linear map is a [T, d] term.
        d = y.shape[-1]
        t_res = self.time_table2 @ self.temporal_res.weight[:, d:].T + self.temporal_res.bias
        t_proj = self.time_table2 @ self.temporal_proj.weight[:, d:].T + self.temporal_proj.bias
        z_res = nn.functional.linear(y, self.temporal_res.weight[:, :d]) + t_res[:, None]
        z_proj = nn.functional.linear(y, self.temporal_proj.weight[:, :d]) + t_proj[:, None]
        y = torch.relu(self.temporal(z_proj) + z_res)
        y = self.block_norm(y)
        # Output layer.
        o = self.out_conv(y.transpose(1, 2).reshape(b, n, w * d))
        o = self.out_norm(torch.relu(o + y[:, -1]))
        o = self.head_drop(self.fc1_bias(self.fc1(o)))
        o = self.fc2_bias(self.fc2(o))
        return o[:, None]

    def forward(self, inputs: ForecastInputs) -> torch.Tensor:
        if self.training:
            return self.step(inputs.x)
        return self.rollout(inputs.x, self.context.horizon)

    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive forecast of ``steps`` steps: each prediction becomes the newest input
        frame (the oldest is dropped), as in the release's ``multi_pred``."""
        f_out = self.context.out_channels
        preds = []
        for _ in range(steps):
            pred = self.step(x)  # [B, 1, N, F_out]
            preds.append(pred)
            frame = x[:, -1:].clone()
            frame[..., :f_out] = pred
            x = torch.cat([x[:, 1:], frame], dim=1)
        return torch.cat(preds, dim=1)
