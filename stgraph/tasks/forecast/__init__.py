"""The forecast task (traffic speed and flow, zone flows): windows of a regular series in, the
next ``horizon`` steps of every node out, masked MAE / RMSE / MAPE."""

from stgraph.tasks.forecast.batch import (
    ForecastBatch,
    ForecastContext,
    ForecastInputs,
    ForecastTargets,
)
from stgraph.tasks.forecast.predictor import Forecaster
from stgraph.tasks.forecast.task import ForecastConfig, ForecastTask

__all__ = [
    "ForecastBatch",
    "ForecastConfig",
    "ForecastContext",
    "ForecastInputs",
    "ForecastTargets",
    "ForecastTask",
    "Forecaster",
]
