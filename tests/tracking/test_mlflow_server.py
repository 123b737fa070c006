"""``stgraph fit`` against a real ``mlflow server`` (HTTP tracking, served artifacts, registry).

The server runs from this venv's ``mlflow`` executable on a free local port with a SQLite backend
and an artifact folder in a temporary directory; it is stopped in the fixture's teardown.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MLFLOW = Path(sys.executable).with_name("mlflow")
NODES = 5
STEPS = 600
SMALL_MODEL = ["--model", "stid", "--set", "model.params.hidden=16"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group, started by us)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """The URI of a running ``mlflow server``."""
    if not MLFLOW.is_file():
        pytest.skip(f"no mlflow executable beside {sys.executable}")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "w")  # closed in the teardown
    process = subprocess.Popen(
        [
            str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
            "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}):\n{_tail(root)}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after 60 s:\n{_tail(root)}")
            time.sleep(0.5)
        yield uri
    finally:
        _stop(process)
        log.close()


def _tail(root: Path) -> str:
    return (root / "server.log").read_text()[-3000:]


def _write_csv(path: Path) -> Path:
    """``STEPS`` 5-minute steps x ``NODES`` nodes: daily cycle plus noise, wide layout."""
    rng = np.random.default_rng(0)
    t = np.arange(STEPS)
    columns = {
        f"n{i}": 60.0 + 8.0 * np.sin(2 * np.pi * t / 288 + i) + rng.normal(0.0, 1.0, STEPS)
        for i in range(NODES)
    }
    stamps = pd.date_range("2024-03-04", periods=STEPS, freq="5min")
    pd.DataFrame({"timestamp": stamps, **columns}).to_csv(path, index=False)
    return path


def _env(uri: str) -> dict[str, str]:
    env = dict(os.environ)  # the test's isolated STGRAPH_HOME and cache
    env["MLFLOW_TRACKING_URI"] = uri
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_fit_tracks_everything_on_a_server(mlflow_server, tmp_path, monkeypatch):
    import mlflow

    csv = _write_csv(tmp_path / "toy.csv")
    result = subprocess.run(
        [sys.executable, "-m", "stgraph", "fit", str(csv), *SMALL_MODEL, "--epochs", "2",
         "--json", "--register", "toy-model"],
        cwd=tmp_path, env=_env(mlflow_server), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    run_id = summary["run_id"]
    assert summary["registered_version"] == "1"
    assert not (tmp_path / "mlruns").exists()  # the artifacts went to the server

    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "toy"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.name"] == "stid"
    # The resolved model config: what was set and the defaults that were not.
    assert run.data.params["model.params.hidden"] == "16"
    assert run.data.params["model.params.num_layers"] == "3"
    history = client.get_metric_history(run_id, "val_mae_avg12")
    assert sorted(m.step for m in history) == [1, 2]
    metrics = run.data.metrics
    assert metrics["test_mae_at3"] == pytest.approx(summary["test"]["mae@3"], rel=1e-6)
    assert metrics["test_mae_avg12"] == pytest.approx(summary["test"]["mae_avg12"], rel=1e-6)

    artifacts = _artifacts(client, run_id)
    for expected in ("config.yaml", "checkpoint/model.pt", "predictions/test_predictions.parquet"):
        assert expected in artifacts, sorted(artifacts)
    assert any(a.startswith("plots/") and a.endswith(".png") for a in artifacts), artifacts

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model("models:/toy-model/1")
        history_rows = pd.read_csv(csv, parse_dates=["timestamp"]).tail(12)
        forecast = model.predict(history_rows)
    finally:
        mlflow.set_tracking_uri(previous)
    assert {"timestamp", "node", "horizon", "value"} <= set(forecast.columns)
    assert len(forecast) == 12 * NODES
    pairs = set(zip(forecast["node"].astype(str), forecast["horizon"].astype(int)))
    assert pairs == {(f"n{i}", h) for i in range(NODES) for h in range(1, 13)}
    assert np.isfinite(forecast["value"].to_numpy(dtype=float)).all()
    last = history_rows["timestamp"].iloc[-1]
    first = forecast.loc[forecast["horizon"] == 1, "timestamp"]
    assert (pd.to_datetime(first) == last + pd.Timedelta("5min")).all()


def test_sigterm_mid_training_ends_the_run_killed_and_exits_143(mlflow_server, tmp_path):
    import mlflow

    csv = _write_csv(tmp_path / "toy_sigterm.csv")
    process = subprocess.Popen(
        [sys.executable, "-m", "stgraph", "fit", str(csv), *SMALL_MODEL, "--epochs", "500",
         "--set", "train.patience=null"],
        cwd=tmp_path, env=_env(mlflow_server), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no epoch line within 300 s:\n" + "".join(seen))
            if line is None:
                pytest.fail(
                    f"fit ended before its first epoch ({process.wait()}):\n{''.join(seen)}"
                )
            seen.append(line)
            if line.startswith("epoch 1/500"):
                break
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    stderr = "".join(seen)
    assert code == 143, stderr  # 128 + SIGTERM; Ctrl-C (SIGINT) exits 130
    assert stderr.rstrip().splitlines()[-1] == "stgraph: terminated by SIGTERM"
    assert "Traceback" not in stderr

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("toy_sigterm")
    runs = client.search_runs([experiment.experiment_id], f"tags.pid = '{process.pid}'")
    assert len(runs) == 1
    assert runs[0].info.status == "KILLED"
    assert len(client.get_metric_history(runs[0].info.run_id, "val_mae_avg12")) >= 1
