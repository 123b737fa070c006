"""Where MLflow runs go: ``MLFLOW_TRACKING_URI`` if set, else a local SQLite store (with the model
registry) under the stgraph home folder.

A new SQLite store is created by the first MLflow client that opens it: MLflow creates the tables
and runs its ~50 schema migrations without any lock, so two processes opening a new store at once
both migrate it and one of them dies (``duplicate column name: step``). `connect` runs that step
once, under ``flock`` on a lock file beside the database, before any other MLflow call of this
process touches the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import platformdirs

T = TypeVar("T")


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


# ----------------------------------------------------------------------------- opening the store
_READY: set[str] = set()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for anything else (a server, in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if missing), released when the block ends or the
    process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def connect() -> str:
    """The tracking URI, with its store ready for concurrent use.

    For a local SQLite store, the first call of each process opens MLflow's tracking store under
    ``flock`` on ``<database>.lock``: the process that finds the database new creates and migrates
    it while the others wait, and then find it complete. MLflow caches the opened store per URI, so
    the clients made afterwards reuse it at no cost. Other stores are returned as they are.
    """
    uri = tracking_uri()
    path = sqlite_path(uri)
    if path is None or uri in _READY:
        return uri
    import mlflow

    with file_lock(path.with_name(path.name + ".lock")):
        retry_transient(lambda: mlflow.MlflowClient(uri))  # opens (and caches) the store
    _READY.add(uri)
    return uri


def retry_transient(call: Callable[[], T], attempts: int = 5) -> T:
    """``call()``, retried when MLflow reports it failed for a transient reason.

    MLflow's SQL stores run each operation in one transaction and, when the database raises an
    ``OperationalError`` (SQLite: ``database is locked`` after its 20 s busy timeout), roll it back
    and raise ``MlflowException`` with error code ``TEMPORARILY_UNAVAILABLE`` (HTTP 503): the code
    MLflow's own REST client retries, and the one its store retries on deadlocks. Nothing of the
    failed attempt is left behind, so the call is repeated as is, with jittered backoff.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as exc:
            if exc.error_code != "TEMPORARILY_UNAVAILABLE" or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt + random.uniform(0, 0.2))
    raise AssertionError("unreachable")
