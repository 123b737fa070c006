"""HGARN: Hierarchical Graph Attention Recurrent Network for next-location prediction.

After Tang, He, Zhao, "Activity-aware Human Mobility Prediction with Hierarchical Graph
Attention Recurrent Network", IEEE T-ITS 2024 (arXiv 2210.07765), and its official code
(YihongT/HGARN at ``70bd14e``; facts in ``specs/hgarn.md`` sections 2-3).

A hierarchy of three graphs, all built from training check-ins (`stgraph.graphs.mobility`):
locations within 0.1 km (``"location"``), each location linked to its category (the
localized-activity graph, ``"location_category"``) and categories that users visit in the same
2-hour slot (``"category"``). Three graph attention networks run over the whole vocabulary once
per forward:

1. ``F_L = GAT_L(E_loc)`` over the location graph (``[L, 50]``);
2. ``F_Ĉ = GAT_h([E_loc; E_cat])[L:]``: each category aggregates its locations (``[C, 200]``);
3. ``F_C = GAT_c([E_cat; F_Ĉ])[:C]``: each category aggregates co-occurring categories and its
   localized copy (``[C, 50]``).

Each check-in becomes ``[user, hour slot, weekday, F_C[c], E_loc[l], F_L[l]]`` for the location
LSTM and ``[user, hour slot, weekday, E_cat[c], F_C[c]]`` for the activity LSTM. The activity
state predicts the next category ``ĉ = W_c h_C``; the location logits are
``(1 - r) W_l [W_h [h_L; h_C]; ĉ] + r W_r h_L`` with ``r = res_factor``.

Each GAT is two attention heads of 16 (dropout 0.1 on its input, the attention weights and the
concatenated heads, ELU) and a ``Linear(32 -> out)``. The LSTMs read every user row once
(`stgraph.nn.sequence`); a sample is the state at its query position, so the model is causal.

Without coordinates (no ``"location"`` graph) the location stream has no ``F_L``. Without
categories (``num_categories == 0``) there is no activity stream: the location logits are
``W_l h_L`` and ``output.category`` is None.

Deviations of ``hgarn`` (clean) from the official code:
- The GAT heads are registered modules: their ``W`` and ``a`` are trained, saved and switched to
  eval mode with the model (the official heads sit in a plain list: frozen at their init, not
  saved, attention dropout on at eval; ``hgarn-faithful`` reproduces this).
- PyG ``GATConv`` with self loops: every node also attends to itself, so a location without
  neighbours keeps its own features. The official dense GAT has no self loops and gives a node
  without neighbours a uniform softmax over all nodes (the mean of every node's features).
- ``GATConv`` adds a bias after aggregation (the official heads have none).
- A location's category is the most frequent among its training check-ins (officially the first
  category seen for the POI in the whole file, test check-ins included); a location never
  checked in during training has no category link.
- Ids start at 0 with no padding row (officially 1, with 0 for padding); hour slots 0-11 from
  local hours and weekday 0-6.
- Each user's row is read once and every sample of it takes the state at its query position
  (officially one padded sequence per sample); the states are the same.
- A history prior (``history_prior``, our addition): a learned weight times ``log(1 + visits)``
  of each location and category in the user's history so far is added to the logits, a direct
  path for the habit that counting captures (the user's most frequent place is a strong
  baseline on these data) instead of leaving the LSTMs to relearn counts from ~2,000 sessions.

Handled by the task's faithful options, not here: the UTC clock of the official code, its
bootstrap batches (independent ``np.random.choice`` per batch), the loss divisor (samples with an
empty history are skipped but counted), the history off-by-one (the smallest id dropped from the
longest row's history), the MAHEC soft label itself and the model selection on test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv

from stgraph.config import option, redefault
from stgraph.graphs.graph import Graph
from stgraph.models.base import MODELS, ModelConfig, NextLocationModel
from stgraph.models.mobility_baselines import row_counts
from stgraph.nn.sequence import at_queries, encode_rows
from stgraph.tasks.next_location.batch import (
    MobilityContext,
    NextLocationInputs,
    NextLocationOutput,
)

HOUR_SLOTS = 12  # 2-hour slots of the day


@dataclass
class HGARNConfig(ModelConfig):
    user_dim: int = option(20, "user embedding width")
    location_dim: int = option(200, "location embedding width (= category_dim)")
    category_dim: int = option(200, "category embedding width (= location_dim)")
    hour_dim: int = option(20, "2-hour slot embedding width")
    weekday_dim: int = option(10, "weekday embedding width")
    gat_heads: int = option(2, "attention heads per GAT")
    gat_hidden: int = option(16, "width of each attention head")
    gat_out: int = option(50, "width of F_L and F_C")
    gat_dropout: float = option(0.1, "dropout on each GAT's input, attention and heads")
    hidden: int = option(600, "hidden width of both LSTMs")
    dropout: float = option(0.1, "dropout on the step features and on the LSTM states")
    res_factor: float = option(0.1, "weight of the residual location head (0: none)")
    self_loops: bool = option(True, "each GAT node also attends to itself")
    gat_bias: bool = option(True, "a bias after each GAT head's aggregation")
    isolated_uniform: bool = option(
        False, "a node without neighbours takes the mean of all nodes (the dense GAT's softmax)"
    )
    frozen_heads: bool = option(
        False, "GAT heads as in the official code: W and a frozen at their init, dropout at eval"
    )
    history_prior: float = option(
        1.0,
        "initial weight of the user's visit counts in the logits, log(1 + count) (learned; "
        "0: none, as the official model)",
    )


@dataclass
class HGARNFaithfulConfig(HGARNConfig):
    """`HGARNConfig` with the official code's behaviour: only the differing defaults."""

    self_loops: bool = redefault(HGARNConfig, "self_loops", False)
    gat_bias: bool = redefault(HGARNConfig, "gat_bias", False)
    isolated_uniform: bool = redefault(HGARNConfig, "isolated_uniform", True)
    frozen_heads: bool = redefault(HGARNConfig, "frozen_heads", True)
    history_prior: float = redefault(HGARNConfig, "history_prior", 0.0)


def _to_buffers(module: nn.Module) -> None:
    """Turn every parameter of ``module`` (recursively) into a buffer of the same name: kept in
    the state dict, never handed to an optimiser."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach().clone())


class GATBlock(nn.Module):
    """Dropout, a multi-head GAT over a fixed graph, ELU, dropout and ``Linear(heads * hidden ->
    out)``: one GAT of HGARN (see the module docstring for the flags).

    Edges ``j -> i`` of ``edge_index`` let node ``i`` attend to node ``j``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        edge_index: torch.Tensor,
        num_nodes: int,
        config: HGARNConfig,
    ) -> None:
        super().__init__()
        heads, hidden = config.gat_heads, config.gat_hidden
        self.dropout = config.gat_dropout
        self.frozen = config.frozen_heads
        self.conv = GATConv(
            in_dim,
            hidden,
            heads=heads,
            concat=True,
            dropout=config.gat_dropout,
            add_self_loops=config.self_loops,
            bias=config.gat_bias,
        )
        self.out = nn.Linear(heads * hidden, out_dim)
        self.register_buffer("edge_index", edge_index.long(), persistent=False)
        isolated = None
        if config.isolated_uniform and not config.self_loops:  # with self loops none is
            isolated = torch.bincount(edge_index[1], minlength=num_nodes) == 0
        self.any_isolated = isolated is not None and bool(isolated.any())
        self.register_buffer("isolated", isolated, persistent=False)
        if self.frozen:
            self._official_init(in_dim, hidden)
            _to_buffers(self.conv)

    def _official_init(self, in_dim: int, hidden: int) -> None:
        """pyGAT's init of a head: Xavier uniform with gain 1.414 on ``W [in, hidden]`` and on
        ``a [2 hidden, 1]``."""
        bound_w = 1.414 * math.sqrt(6.0 / (in_dim + hidden))
        bound_a = 1.414 * math.sqrt(6.0 / (2 * hidden + 1))
        with torch.no_grad():
            self.conv.lin.weight.uniform_(-bound_w, bound_w)
            self.conv.att_src.uniform_(-bound_a, bound_a)
            self.conv.att_dst.uniform_(-bound_a, bound_a)

    def train(self, mode: bool = True) -> GATBlock:
        super().train(mode)
        if self.frozen:  # the official heads never leave training mode
            self.conv.train(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = self.conv(x, self.edge_index)
        if self.any_isolated:
            # The dense GAT's softmax over no neighbour is uniform over all nodes: their mean.
            mean = self.conv.lin(x).mean(0)
            if self.conv.bias is not None:
                mean = mean + self.conv.bias
            h = torch.where(self.isolated[:, None], mean, h)
        h = F.dropout(F.elu(h), self.dropout, self.training)
        return self.out(h)


def _graph(context: MobilityContext, name: str, num_nodes: int) -> Graph:
    graph = context.location_graphs.get(name)
    if graph is None:
        raise ValueError(
            f"hgarn needs the '{name}' graph when the data has categories; the context has "
            f"{sorted(context.location_graphs) or 'no graphs'}"
        )
    if graph.num_nodes != num_nodes:
        raise ValueError(f"graph '{name}' has {graph.num_nodes} nodes, expected {num_nodes}")
    return graph


def keras_init(module: nn.Module) -> None:
    """The official init: Xavier uniform input weights and orthogonal recurrent weights of the
    LSTMs, every (registered) bias zero."""
    for name, param in module.named_parameters():
        if "weight_ih" in name:
            nn.init.xavier_uniform_(param)
        elif "weight_hh" in name:
            nn.init.orthogonal_(param)
        elif "bias" in name:
            nn.init.zeros_(param)


@MODELS.register("hgarn")
class HGARN(NextLocationModel):
    """HGARN (Tang et al., IEEE T-ITS 2024), clean variant (see the module docstring)."""

    config_class = HGARNConfig

    def __init__(self, config: HGARNConfig, context: MobilityContext) -> None:
        super().__init__(config, context)
        c = config
        L, C = context.num_locations, context.num_categories
        if L < 1 or context.num_users < 1:
            raise ValueError("hgarn needs at least one location and one user")
        self.use_categories = C > 0
        self.use_location_gat = "location" in context.location_graphs
        if self.use_categories and c.location_dim != c.category_dim:
            raise ValueError(
                "location_dim and category_dim must be equal: locations and categories share "
                f"one GAT (got {c.location_dim} and {c.category_dim})"
            )
        self.user = nn.Embedding(context.num_users, c.user_dim)
        self.location = nn.Embedding(L, c.location_dim)
        self.hour = nn.Embedding(HOUR_SLOTS, c.hour_dim)
        self.weekday = nn.Embedding(7, c.weekday_dim)
        steps = c.user_dim + c.hour_dim + c.weekday_dim
        location_in = steps + c.location_dim
        if self.use_location_gat:
            graph = _graph(context, "location", L)
            self.location_gat = GATBlock(c.location_dim, c.gat_out, graph.edge_index, L, c)
            location_in += c.gat_out
        if self.use_categories:
            self.category = nn.Embedding(C, c.category_dim)
            member = _graph(context, "location_category", L + C).edge_index
            self.activity_gat = GATBlock(c.category_dim, c.category_dim, member, L + C, c)
            cooccur = _graph(context, "category", C).edge_index
            copies = torch.stack([torch.arange(C) + C, torch.arange(C)])  # copy c' -> c
            edges = torch.cat([cooccur, copies], dim=1)
            self.category_gat = GATBlock(c.category_dim, c.gat_out, edges, 2 * C, c)
            location_in += c.gat_out
            self.category_rnn = nn.LSTM(
                steps + c.category_dim + c.gat_out, c.hidden, batch_first=True
            )
            self.category_head = nn.Linear(c.hidden, C)
            self.merge = nn.Linear(2 * c.hidden, c.hidden)
            self.location_head = nn.Linear(c.hidden + C, L)
            if c.res_factor > 0:
                self.residual = nn.Linear(c.hidden, L)
        else:
            self.location_head = nn.Linear(c.hidden, L)
        self.location_rnn = nn.LSTM(location_in, c.hidden, batch_first=True)
        keras_init(self)
        if c.history_prior:
            self.history_weight = nn.Parameter(torch.full((2,), float(c.history_prior)))

    def graph_features(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(F_L [L, gat_out] or None, F_C [C, gat_out] or None)`` over the whole vocabulary."""
        e_loc = self.location.weight
        f_l = self.location_gat(e_loc) if self.use_location_gat else None
        f_c = None
        if self.use_categories:
            e_cat = self.category.weight
            localized = self.activity_gat(torch.cat([e_loc, e_cat]))[len(e_loc) :]
            f_c = self.category_gat(torch.cat([e_cat, localized]))[: len(e_cat)]
        return f_l, f_c

    def forward(self, inputs: NextLocationInputs) -> NextLocationOutput:
        c = self.config
        width = inputs.location.shape[1]
        shared = [  # the features both streams read
            self.user(inputs.user)[:, None].expand(-1, width, -1),
            self.hour((inputs.hour // 2).clamp(0, HOUR_SLOTS - 1)),
            self.weekday(inputs.weekday),
        ]
        f_l, f_c = self.graph_features()
        location_steps = list(shared)
        if f_c is not None:
            fc_steps = f_c[inputs.category]
            location_steps.append(fc_steps)
        location_steps.append(self.location(inputs.location))
        if f_l is not None:
            location_steps.append(f_l[inputs.location])
        x = F.dropout(torch.cat(location_steps, dim=-1), c.dropout, self.training)
        states = encode_rows(self.location_rnn, x, inputs.lengths)
        h_loc = F.dropout(
            at_queries(states, inputs.query_row, inputs.query_pos), c.dropout, self.training
        )
        if f_c is None:
            return self._with_history(NextLocationOutput(self.location_head(h_loc)), inputs)
        z = torch.cat([*shared, self.category(inputs.category), fc_steps], dim=-1)
        z = F.dropout(z, c.dropout, self.training)
        states = encode_rows(self.category_rnn, z, inputs.lengths)
        h_cat = F.dropout(
            at_queries(states, inputs.query_row, inputs.query_pos), c.dropout, self.training
        )
        category = self.category_head(h_cat)
        merged = self.merge(torch.cat([h_loc, h_cat], dim=-1))
        location = self.location_head(torch.cat([merged, category], dim=-1))
        if c.res_factor > 0:
            location = (1 - c.res_factor) * location + c.res_factor * self.residual(h_loc)
        return self._with_history(NextLocationOutput(location, category), inputs)

    def _with_history(
        self, output: NextLocationOutput, inputs: NextLocationInputs
    ) -> NextLocationOutput:
        """The logits plus a learned weight times ``log(1 + visits)`` of each location (and
        category) in the sample's own row up to its query position: a direct path for the
        habit that the user's most frequent place captures (causal, like the LSTMs)."""
        if not self.config.history_prior:
            return output
        weight = self.history_weight
        location = output.location + weight[0] * torch.log1p(
            row_counts(inputs.location, inputs, output.location.shape[1])
        )
        category = output.category
        if category is not None:
            counts = row_counts(inputs.category, inputs, category.shape[1])
            category = category + weight[1] * torch.log1p(counts)
        return NextLocationOutput(location, category)


@MODELS.register("hgarn-faithful")
class HGARNFaithful(HGARN):
    """HGARN as its official code behaves (Tang et al., IEEE T-ITS 2024; YihongT/HGARN
    ``70bd14e``): frozen GAT heads with attention dropout at eval, no self loops, and the dense
    GAT's uniform softmax for nodes without neighbours.

    The official heads are not registered submodules: their ``W`` and ``a`` keep pyGAT's init
    (Xavier uniform, gain 1.414), are never trained and never leave training mode. The heads
    have no bias. A node without neighbours takes the mean of all nodes' head features (the
    uniform softmax; the attention dropout on such a row is not reproduced: its expectation is
    used).

    Unlike the official code, the frozen heads are saved in the state dict (as buffers), so a
    checkpoint reloads the same model. Data, clock, batching and loss quirks belong to the
    task's faithful options (see the module docstring).
    """

    config_class = HGARNFaithfulConfig
