"""STID-style MLP: the small neural baseline.

After Shao et al., "Spatial-Temporal Identity: A Simple yet Effective Baseline for Multivariate
Time Series Forecasting", CIKM 2022. Each node's input window is flattened and joined with learned
node, time-of-day and day-of-week identities, then passed through residual MLP layers that output
the whole horizon at once. It ignores the graph, which makes it the control for graph models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stgraph.config import option
from stgraph.models.base import MODELS, ForecastModel, ModelConfig
from stgraph.nn.encodings import day_slot
from stgraph.tasks.forecast import ForecastContext


@dataclass
class STIDConfig(ModelConfig):
    hidden: int = option(64, "width of each identity embedding and of the input projection")
    num_layers: int = option(3, "residual MLP layers")
    dropout: float = option(0.15, "dropout inside the residual layers")
    node_embedding: bool = option(True, "learn a per-node identity")
    calendar_embedding: bool = option(True, "learn time-of-day and day-of-week identities")


class _ResidualMLP(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.layers(h)


@MODELS.register("stid")
class STID(ForecastModel):
    """MLP with node and calendar identities (see the module docstring)."""

    config_class = STIDConfig

    def __init__(self, config: STIDConfig, context: ForecastContext) -> None:
        super().__init__(config, context)
        d = config.hidden
        self.input_projection = nn.Linear(context.window * context.in_channels, d)
        parts = 1
        if config.node_embedding:
            self.node = nn.Parameter(torch.empty(context.num_nodes, d))
            nn.init.xavier_uniform_(self.node)
            parts += 1
        if config.calendar_embedding:
            self.time_of_day = nn.Embedding(context.steps_per_day, d)
            self.day_of_week = nn.Embedding(7, d)
            parts += 2
        width = parts * d
        self.encoder = nn.Sequential(
            *[_ResidualMLP(width, config.dropout) for _ in range(config.num_layers)]
        )
        self.head = nn.Linear(width, context.horizon * context.out_channels)

    def forward(self, inputs) -> torch.Tensor:
        b, w, n, f = inputs.x.shape
        h = [self.input_projection(inputs.x.permute(0, 2, 1, 3).reshape(b, n, w * f))]
        if self.config.node_embedding:
            h.append(self.node.expand(b, -1, -1))
        if self.config.calendar_embedding:
            slot = day_slot(inputs.x_tod[:, -1], self.context.steps_per_day)
            h.append(self.time_of_day(slot)[:, None].expand(-1, n, -1))
            h.append(self.day_of_week(inputs.x_dow[:, -1])[:, None].expand(-1, n, -1))
        out = self.head(self.encoder(torch.cat(h, dim=-1)))  # [B, N, H * F_out]
        return out.reshape(b, n, self.context.horizon, -1).transpose(1, 2)
