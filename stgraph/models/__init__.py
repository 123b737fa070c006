"""Forecast models. Each module registers its models in `MODELS` when imported."""

from stgraph.models.base import MODELS, ForecastModel, ModelConfig, ModelContext, build_model
from stgraph.plugins import import_submodules

import_submodules(__name__)

__all__ = ["MODELS", "ForecastModel", "ModelConfig", "ModelContext", "build_model"]
