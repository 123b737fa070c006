"""Several fits started at once on a NEW MLflow store (issue #19 item 2): each creates the store's
tables on first use, and MLflow migrates a new SQLite database without any lock, so all but one
used to die (``OperationalError: duplicate column name: step``, or alembic's "expected to match one
row"). `stgraph.tracking.store.connect` now creates it once, under a lock.

Each process does what a fit does with the store (`Tracker`: get or create the experiment, start a
run, log params, metrics and tags, end it), released by a barrier once all have imported MLflow, so
that they open the new database within milliseconds of each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import mlflow  # noqa: F401  (imported before the barrier: only the store work races)
    from stgraph.tracking.tracker import Tracker

    go = Path(sys.argv[1])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    with Tracker("concurrent-fits", f"fit {sys.argv[2]}") as tracker:
        tracker.log_config({"model": {"name": "stid"}, "train": {"epochs": 1}})
        for epoch in range(3):
            tracker.log_metrics({"loss": 1.0 / (epoch + 1)}, step=epoch, prefix="train_")
        tracker.set_tags({"worker": sys.argv[2]})
    print(tracker.run_id, flush=True)
    """
)


def _start_together(home: Path, count: int) -> list[tuple[int, str, str]]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: STGRAPH_HOME/mlflow/mlflow.db
    env.update(
        STGRAPH_HOME=str(home),
        MLFLOW_LOGGING_LEVEL="ERROR",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    go = home.parent / f"go-{home.name}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        for proc in procs:  # every worker has imported MLflow and waits at the barrier
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            results.append((proc.returncode, out.strip(), err.strip()))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "Error" in line] or stderr.splitlines()
    return lines[-1][:300] if lines else ""


@pytest.mark.parametrize("count", [4])
def test_fits_started_together_on_a_new_store_all_finish(tmp_path, count):
    home = tmp_path / "home"
    assert not (home / "mlflow" / "mlflow.db").exists()
    started = time.monotonic()
    results = _start_together(home, count)
    failed = [(code, _error_line(err)) for code, _, err in results if code != 0]
    assert not failed, f"{len(failed)} of {count} processes failed: {failed}"

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    run_ids = [out.splitlines()[-1] for _, out, _ in results]
    assert len(set(run_ids)) == count
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["train_loss"] == pytest.approx(1 / 3)
        assert run.data.params["model.name"] == "stid"
    experiments = [e for e in client.search_experiments() if e.name == "concurrent-fits"]
    assert len(experiments) == 1  # created once although every worker found it missing
    assert time.monotonic() - started < 240


def test_transient_store_errors_are_retried_others_are_not(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    from stgraph.tracking import store

    monkeypatch.setattr(store.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:  # what MLflow raises when SQLite stays locked past its busy timeout
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return "done"

    assert store.retry_transient(flaky) == "done" and len(calls) == 3

    def missing():
        calls.append(1)
        raise MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)

    calls.clear()
    with pytest.raises(MlflowException):
        store.retry_transient(missing)
    assert len(calls) == 1

    def always_locked():
        calls.append(1)
        raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)

    calls.clear()
    with pytest.raises(MlflowException):
        store.retry_transient(always_locked, attempts=4)
    assert len(calls) == 4


def test_experiment_created_meanwhile_by_another_process_is_used(tmp_path, monkeypatch):
    import mlflow

    from stgraph.tracking.records import experiment_id_of

    client = mlflow.MlflowClient()
    name = f"created-meanwhile-{tmp_path.name}"
    existing = client.create_experiment(name, (tmp_path / "artifacts").as_uri())
    real = client.get_experiment_by_name
    looked = []

    def stale_first(experiment_name):  # the first lookup ran before the other process created it
        looked.append(experiment_name)
        return None if len(looked) == 1 else real(experiment_name)

    monkeypatch.setattr(client, "get_experiment_by_name", stale_first)
    assert experiment_id_of(client, name) == existing
    assert len(looked) == 2
