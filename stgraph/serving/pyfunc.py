"""The MLflow pyfunc flavour of a stgraph model, for every task: a request DataFrame in, the
prediction table out, so that ``mlflow models serve`` can serve it over HTTP."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

BUNDLE_KEY = "bundle"


class StgraphPyfunc(mlflow.pyfunc.PythonModel):
    """A request table in, the task's prediction table out (`Predictor.predict_frame`): for a
    forecast model a long ``timestamp, node, value`` or a wide table of recent history in, and
    ``timestamp, node, horizon, value`` out."""

    def load_context(self, context) -> None:
        from stgraph.serving.bundle import load_predictor

        self.predictor = load_predictor(context.artifacts[BUNDLE_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict_frame(model_input)


def log_pyfunc(bundle: Path, register: str | None) -> str | None:
    """Log ``bundle`` as the active run's model (artifact ``model``); register it if asked."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
        artifacts={BUNDLE_KEY: str(bundle)},
        registered_model_name=register,
        pip_requirements=[f"stgraph-forecast=={_version()}"],
    )
    version = getattr(info, "registered_model_version", None)
    return None if version is None else str(version)


def _version() -> str:
    from stgraph import __version__

    return __version__
