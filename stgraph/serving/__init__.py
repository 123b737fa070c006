"""Serving trained models, for every task: the model bundle (`stgraph.serving.bundle`), the MLflow
pyfunc, model resolution in the registry, one-off predictions (`stgraph forecast`) and scheduled
jobs. Nothing is imported here: a forecast call's bookkeeping process must not load torch."""
