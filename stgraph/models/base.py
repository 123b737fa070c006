"""What every model is: a plain ``nn.Module`` registered by name, built from a typed config
dataclass and the facts of the data (its task's `ModelContext`).

Contract:
- A model serves one task (``task``); ``forward(inputs)`` takes that task's batch inputs only
  (never the targets) and returns what the task's loss and metrics read. A forecast model returns
  ``[B, H, N, F_out]`` in scaled units; while training it may return fewer steps (the loss then
  covers those; see `ForecastTask.loss`).
- Models never see scalers or losses.
- A model with statistics to estimate from training data (historical average, a seasonal prior,
  a DTW graph) implements ``fit_train(train)``, where ``train`` is the task's `TrainView`; one
  with nothing to learn by gradient sets ``trainable = False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from stgraph.config import from_dict
from stgraph.data.views import TrainView
from stgraph.errors import InputError
from stgraph.registry import Registry
from stgraph.tasks.base import ModelContext
from stgraph.tasks.cross_section.batch import StockContext
from stgraph.tasks.forecast.batch import ForecastContext
from stgraph.tasks.next_location.batch import MobilityContext


@dataclass
class ModelConfig:
    """Base of every model's config: subclasses add typed fields made with `config.option`."""


class Model(nn.Module):
    """Base class of every model."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True
    task: ClassVar[str]

    def __init__(self, config: ModelConfig, context: ModelContext) -> None:
        super().__init__()
        self.config = config
        self.context = context

    def fit_train(self, train: TrainView) -> None:
        """Estimate statistics from the task's training data (default: nothing)."""


class ForecastModel(Model):
    """Base class of forecast models (`stgraph.tasks.forecast`)."""

    task = "forecast"
    context: ForecastContext


class NextLocationModel(Model):
    """Base class of next-location models (`stgraph.tasks.next_location`): ``forward`` takes
    `NextLocationInputs` and returns a `NextLocationOutput`; it must be causal along each row."""

    task = "next-location"
    context: MobilityContext


class CrossSectionModel(Model):
    """Base class of cross-section models (`stgraph.tasks.cross_section`): ``forward`` takes
    `CrossSectionInputs` and returns a `CrossSectionOutput`."""

    task = "cross-section"
    context: StockContext


MODELS: Registry[type[Model]] = Registry("model", packages=("stgraph.models",))


def resolve_model_config(name: str, params: dict[str, Any] | None) -> ModelConfig:
    """Look ``name`` up and validate ``params`` against its config class (no data needed)."""
    return from_dict(MODELS.get(name).config_class, params, "model.params")


def build_model(name: str, params: dict[str, Any] | ModelConfig | None, context: Any) -> Model:
    """Build model ``name`` from its (raw or resolved) config for ``context``.

    A constructor's ``ValueError`` is a combination of parameters (or a parameter and the data)
    that the model cannot take: bad input, reported as such.
    """
    cls = MODELS.get(name)
    config = params if isinstance(params, ModelConfig) else resolve_model_config(name, params)
    try:
        return cls(config, context)
    except ValueError as exc:
        raise InputError(f"model.params of '{name}': {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
