"""What every forecast model is: a plain ``nn.Module`` registered by name and built from a typed
config dataclass and the facts of the dataset (`ModelContext`).

Contract:
- ``forward(batch: ForecastBatch) -> Tensor [B, H, N, F_out]`` in scaled units. While training a
  model may return fewer steps (the loss then covers those; see `ForecastTask.loss`).
- Models never see scalers or losses.
- A model with statistics to estimate from the training split (historical average) implements
  ``fit_train(task)``; one with nothing to learn by gradient sets ``trainable = False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from stgraph.config import from_dict
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.registry import Registry


@dataclass
class ModelConfig:
    """Base of every model's config: subclasses add typed fields made with `config.option`."""


@dataclass(frozen=True)
class ModelContext:
    """Facts about the data a model is built for (not hyperparameters)."""

    num_nodes: int
    in_channels: int
    out_channels: int
    window: int
    horizon: int
    steps_per_day: int
    graph: Graph
    coords: torch.Tensor | None = None


class ForecastModel(nn.Module):
    """Base class of forecast models."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True

    def __init__(self, config: ModelConfig, context: ModelContext) -> None:
        super().__init__()
        self.config = config
        self.context = context

    def fit_train(self, task: Any) -> None:
        """Estimate statistics from the training split of ``task`` (default: nothing)."""


MODELS: Registry[type[ForecastModel]] = Registry("model")


def build_model(name: str, params: dict[str, Any] | None, context: ModelContext) -> ForecastModel:
    """Look ``name`` up, validate ``params`` against its config class, build it.

    A constructor's ``ValueError`` is a combination of parameters (or a parameter and the data)
    that the model cannot take: bad input, reported as such.
    """
    cls = MODELS.get(name)
    config = from_dict(cls.config_class, params, "model.params")
    try:
        return cls(config, context)
    except ValueError as exc:
        raise InputError(f"model.params of '{name}': {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
