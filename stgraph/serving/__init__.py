"""Serving trained models, for every task: the model bundle, the MLflow pyfunc, model resolution
in the registry, one-off predictions (`stgraph forecast`) and scheduled jobs."""

from stgraph.serving.bundle import load_predictor, save_bundle

__all__ = ["load_predictor", "save_bundle"]
