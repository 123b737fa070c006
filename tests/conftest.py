"""Shared fixtures. Real data lives at ../shared/data (CI sets STGRAPH_REQUIRE_REAL_DATA=1)."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's cache and MLflow store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("STGRAPH_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (home / "mlruns").as_uri())
    monkeypatch.delenv("STGRAPH_DATA_DIR", raising=False)
