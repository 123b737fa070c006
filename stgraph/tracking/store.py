"""Where MLflow runs go: ``MLFLOW_TRACKING_URI`` if set, else a local SQLite store (with the model
registry) under the stgraph home folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def stgraph_home() -> Path:
    """``$STGRAPH_HOME``, else the user data folder (``~/.local/share/stgraph`` on Linux)."""
    return Path(os.environ.get("STGRAPH_HOME") or platformdirs.user_data_dir("stgraph"))


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = stgraph_home() / "mlflow"
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def default_artifact_root() -> str | None:
    """Artifacts of new experiments in a local SQLite store go beside the database file (MLflow
    would otherwise use ./mlruns of whatever directory a fit runs in); a server decides itself."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()


def runs_dir() -> Path:
    """Local checkpoints of runs in progress, by MLflow run id (what ``--resume`` reads)."""
    return stgraph_home() / "runs"
