"""A fit killed with SIGKILL and resumed ends with the same test metrics as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def _write_csv(path):
    rng = np.random.default_rng(3)
    stamps = pd.date_range("2024-03-04", periods=900, freq="15min")
    phase = 2 * np.pi * np.arange(900) / 96
    values = 50 + 10 * np.sin(phase)[:, None] + rng.normal(0, 2, (900, 5))
    frame = pd.DataFrame(values, columns=[f"s{i}" for i in range(5)])
    frame.insert(0, "timestamp", stamps)
    frame.to_csv(path, index=False)


def _fit(*extra):
    command = [sys.executable, "-m", "stgraph", "fit", *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    data = tmp_path / "toy.csv"
    _write_csv(data)
    args = [
        str(data),
        "--model",
        "stid",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--seed",
        "5",
        "--set",
        "train.patience=null",
        "--set",
        "model.params.hidden=16",
        "--set",
        "tracking.log_model=false",
        "--set",
        "task.params.plot_nodes=0",
    ]
    reference = _fit(*args, "--json")

    process = subprocess.Popen(
        [sys.executable, "-m", "stgraph", "fit", *args], stderr=subprocess.PIPE, text=True
    )
    run_id = None
    for line in process.stderr:
        if line.startswith("stgraph: run "):
            run_id = line.split()[2]
        if line.startswith("epoch 2/4"):
            os.kill(process.pid, signal.SIGKILL)  # checkpoint of epoch 2 is already on disk
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and run_id
    checkpoints = Path(os.environ["STGRAPH_HOME"]) / "runs" / run_id
    assert (checkpoints / "checkpoint.pt").is_file()

    resumed = _fit(str(data), "--resume", run_id, "--json")
    assert resumed["run_id"] == run_id and resumed["epochs"] == 4
    assert resumed["best_epoch"] == reference["best_epoch"]
    for name, value in reference["test"].items():
        assert resumed["test"][name] == pytest.approx(value, rel=1e-6), name
    run = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert not checkpoints.exists()  # finished: the model is in MLflow, the checkpoints go
    history = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_metric_history(
        run_id, "val_mae_avg12"
    )
    assert sorted({m.step for m in history}) == [1, 2, 3, 4]
