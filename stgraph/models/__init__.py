"""Forecast models. Each module registers its models in `MODELS` when imported.

The modules are imported on demand: looking up ``stid`` imports ``stgraph.models.stid`` alone, a
listing imports them all (see `Registry.defer_to`). Loading one trained model to forecast thus
skips the others' dependencies (torch_geometric, scipy, torchdiffeq).
"""

from stgraph.models.base import MODELS, ForecastModel, ModelConfig, ModelContext, build_model

MODELS.defer_to(__name__)

__all__ = ["MODELS", "ForecastModel", "ModelConfig", "ModelContext", "build_model"]
