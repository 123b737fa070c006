"""Models, each serving one task. A module of this package registers its models in `MODELS`;
the registry imports them all on the first look-up."""

from stgraph.models.base import MODELS, ForecastModel, Model, ModelConfig, build_model

__all__ = ["MODELS", "ForecastModel", "Model", "ModelConfig", "build_model"]
