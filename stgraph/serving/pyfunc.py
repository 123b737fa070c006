"""The MLflow pyfunc flavour of a stgraph model: a DataFrame of recent history in, the forecast
table out, so that ``mlflow models serve`` can serve it over HTTP."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

BUNDLE_KEY = "bundle"


class StgraphPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a long table ``timestamp, node, value`` or a wide one (``timestamp`` column + one
    column per node). Output: ``timestamp, node, horizon, value``."""

    def load_context(self, context) -> None:
        from stgraph.serving.bundle import Forecaster

        self.forecaster = Forecaster.load(context.artifacts[BUNDLE_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.forecaster.forecast(to_wide(model_input), source="request")


def to_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Long (``timestamp,node,value``) or wide (``timestamp`` + node columns) -> wide, indexed by
    timestamp, columns as strings."""
    if {"timestamp", "node", "value"} <= set(frame.columns) and frame.shape[1] == 3:
        frame = frame.assign(node=frame["node"].astype(str))
        wide = frame.pivot(index="timestamp", columns="node", values="value")
    else:
        wide = frame.set_index("timestamp") if "timestamp" in frame.columns else frame
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index))
    wide.columns = [str(c) for c in wide.columns]
    return wide.sort_index()


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
