"""A tiny registered model shared by the forecast, job and serving tests.

`stgraph fit` runs once per test session (in a subprocess, against the session's MLflow store)
and registers model ``toy`` version 1 with alias ``prod``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NODES = ["s0", "s1", "s2", "s3"]
STEPS = 600  # ~2 days of 5-minute readings
_TRAINED: dict[str, dict] = {}


def toy_frame(steps: int = STEPS) -> pd.DataFrame:
    """Wide table: ``timestamp`` + one daily sine per node with noise, 5-minute steps."""
    stamps = pd.date_range("2024-01-01", periods=steps, freq="5min")
    t = np.arange(steps)
    rng = np.random.default_rng(0)
    columns = {
        node: 50 + 10 * np.sin(2 * np.pi * t / 288 + i) + rng.normal(0, 1, steps)
        for i, node in enumerate(NODES)
    }
    return pd.DataFrame({"timestamp": stamps, **columns})


def store_env(home: Path) -> dict[str, str]:
    """The environment conftest gives each test (the session's MLflow store)."""
    env = dict(os.environ)
    env.update(
        STGRAPH_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        STGRAPH_CACHE_DIR=str(home / "cache"),
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    env.pop("STGRAPH_DATA_DIR", None)
    return env


def trained_toy(home: Path) -> dict:
    """Fit, register and promote ``toy`` once per session; return its facts and data file."""
    key = str(home)
    if key in _TRAINED:
        return _TRAINED[key]
    folder = home / "toy-data"
    folder.mkdir(exist_ok=True)
    csv = folder / "toy.csv"
    toy_frame().to_csv(csv, index=False)
    command = [
        sys.executable, "-m", "stgraph", "fit", str(csv), "--model", "stid", "--epochs", "1",
        "--register", "toy", "--json", "--quiet", "--set", "model.params.hidden=8",
        "--set", "task.params.plot_nodes=0",
    ]  # fmt: skip
    env = store_env(home)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    assert done.returncode == 0, done.stderr
    fit = json.loads(done.stdout.strip().splitlines()[-1])
    with pytest.MonkeyPatch.context() as patch:
        for name in ("STGRAPH_HOME", "MLFLOW_TRACKING_URI"):
            patch.setenv(name, env[name])
        from stgraph.serving.registry import promote

        promote("toy", fit["registered_version"], "prod")
    _TRAINED[key] = {**fit, "csv": csv, "version": fit["registered_version"]}
    return _TRAINED[key]
