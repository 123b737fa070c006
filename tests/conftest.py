"""Shared fixtures. Real data lives at ../shared/data (CI sets STGRAPH_REQUIRE_REAL_DATA=1)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder; skips (or fails under STGRAPH_REQUIRE_REAL_DATA=1) if absent."""
    if not SHARED_DATA.is_dir():
        message = f"real data folder {SHARED_DATA} is absent"
        if os.environ.get("STGRAPH_REQUIRE_REAL_DATA") == "1":
            pytest.fail(message + " and STGRAPH_REQUIRE_REAL_DATA=1")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def _session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stgraph-home")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(_session_home, tmp_path, monkeypatch):
    """Keep every test away from the user's cache, data and MLflow store.

    One SQLite MLflow store per session (creating one costs seconds); a fresh cache per test.
    """
    monkeypatch.setenv("STGRAPH_HOME", str(_session_home))
    monkeypatch.setenv("STGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{_session_home / 'mlflow.db'}")
    monkeypatch.delenv("STGRAPH_DATA_DIR", raising=False)


def make_series(values: np.ndarray, mask: np.ndarray | None = None, freq: str = "5min",
                start: str = "2024-01-01", name: str = "toy"):
    """A `Series` from ``[T, N]`` or ``[T, N, F]`` values (mask: nonzero entries)."""
    from stgraph.data.series import Series

    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[..., None]
    if mask is None:
        mask = values != 0
    mask = np.asarray(mask, dtype=bool).reshape(values.shape)
    stamps = pd.date_range(start, periods=values.shape[0], freq=freq)
    nodes = tuple(f"n{i}" for i in range(values.shape[1]))
    channels = tuple(f"c{i}" for i in range(values.shape[2]))
    return Series(values, mask, stamps, nodes, channels, name)
