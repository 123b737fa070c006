"""Shared fixtures. Real data lives at ../shared/data (CI sets STGRAPH_REQUIRE_REAL_DATA=1).

Markers (declared in pyproject.toml). ``slow``: every test that starts a process (``stgraph`` or
``python`` via subprocess, torchrun, an ``mlflow server`` or ``mlflow models serve``, a notebook
kernel) and any other test that takes more than a few seconds; mark the whole module with
``pytestmark = pytest.mark.slow`` when all of it is, else the test. ``make test-fast`` runs
``pytest -m "not slow"`` for the edit-test loop; ``make test`` and CI run everything.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per test process: the suite runs on two pytest-xdist workers, and
# oversubscribed OpenMP threads spin-wait, which makes everything several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
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
