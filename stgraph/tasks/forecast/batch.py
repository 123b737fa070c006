"""What a forecast model reads (`ForecastInputs`), what it is scored on (`ForecastTargets`) and
the facts of the data it is built for (`ForecastContext`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stgraph.graphs.graph import Graph
from stgraph.tasks.base import Batch, ModelContext, Tensors


@dataclass(frozen=True)
class ForecastInputs(Tensors):
    """A model's view of ``B`` windows: ``W`` input steps, ``H`` target steps, ``N`` nodes.

    Attributes:
        x: ``[B, W, N, F]`` scaled inputs; unobserved entries are 0 (the training mean).
        x_mask: ``[B, W, N, F]`` True where the input was observed.
        x_tod, x_dow: ``[B, W]`` time of day in [0, 1) and day of week (0 = Monday) of the inputs.
        y_tod, y_dow: ``[B, H]`` the same for the target steps (calendar facts, known in advance).
        anchor: ``[B]`` index of each window's last input step in the series.
    """

    x: torch.Tensor
    x_mask: torch.Tensor
    x_tod: torch.Tensor
    x_dow: torch.Tensor
    y_tod: torch.Tensor
    y_dow: torch.Tensor
    anchor: torch.Tensor


@dataclass(frozen=True)
class ForecastTargets(Tensors):
    """``y``: ``[B, H, N, F_out]`` targets in the data's units (0 where unobserved);
    ``y_mask``: True where the target was observed."""

    y: torch.Tensor
    y_mask: torch.Tensor


ForecastBatch = Batch[ForecastInputs, ForecastTargets]


@dataclass(frozen=True)
class ForecastContext(ModelContext):
    """Facts about the series a forecast model is built for."""

    num_nodes: int
    in_channels: int
    out_channels: int
    window: int
    horizon: int
    steps_per_day: int
    graph: Graph
    coords: torch.Tensor | None = None

    @property
    def graphs(self) -> dict[str, Graph]:
        return {"spatial": self.graph}
