"""MLflow "model from code" entry point: MLflow runs this file to get the pyfunc model, so no
pickled Python object is stored with the model."""

import mlflow

from stgraph.serving.pyfunc import StgraphPyfunc

mlflow.models.set_model(StgraphPyfunc())
