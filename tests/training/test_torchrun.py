"""Two real CPU processes under torchrun (gloo on 127.0.0.1) make one MLflow run."""

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


def test_two_process_training_logs_one_run(tmp_path):
    rng = np.random.default_rng(1)
    stamps = pd.date_range("2024-03-04", periods=700, freq="15min")
    values = 50 + 10 * np.sin(2 * np.pi * np.arange(700) / 96)[:, None] + rng.normal(0, 2, (700, 4))
    frame = pd.DataFrame(values, columns=[f"s{i}" for i in range(4)])
    frame.insert(0, "timestamp", stamps)
    data = tmp_path / "ddp-toy.csv"
    frame.to_csv(data, index=False)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        # Standalone: torchrun's own rendezvous store on a free localhost port, so no port picked
        # here can be taken meanwhile by the other tests' servers.
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "stgraph",
        "fit",
        str(data),
        "--model",
        "stid",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--json",
        "--quiet",
        "--set",
        "tracking.log_model=false",
        "--set",
        "task.params.plot_nodes=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}  # loopback only
    # A session of its own, so that a hang kills the ranks too, not only torchrun.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun hung; its stderr ends with:\n{stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    summaries = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    summary = summaries[0]
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [client.get_experiment_by_name("ddp-toy").experiment_id], filter_string=""
    )
    assert [run.info.run_id for run in runs] == [summary["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    assert run.data.metrics["test_mae_at3"] == pytest.approx(summary["test"]["mae@3"])
    history = client.get_metric_history(run.info.run_id, "val_mae_avg12")
    assert sorted(m.step for m in history) == [1, 2]
