"""Forecasting with trained models: the self-contained model bundle and the `Forecaster`."""

from stgraph.serving.bundle import Forecaster, save_bundle

__all__ = ["Forecaster", "save_bundle"]
