"""Forecast jobs: a backfill killed mid-write resumes to the same files as an uninterrupted one,
``job run`` is idempotent, and ``job score`` logs the realised MAE per horizon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mlflow
import numpy as np
import pandas as pd
import pytest

from stgraph.cli import main
from tests.serving.toy import store_env, toy_frame, trained_toy

pytestmark = pytest.mark.slow

TICKS = ["2024-01-02T00:00", "2024-01-02T04:00"]  # 5 ticks at 1h


@pytest.fixture(scope="module")
def toy(_session_home):
    return trained_toy(_session_home)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a new experiment's artifacts under ./mlruns


def _job_file(folder, csv, name="toy-job"):
    path = folder / f"{name}.yaml"
    path.write_text(
        f"model_uri: models:/toy@prod\ninput: {csv}\n"
        f"output: {folder}/out/{{as_of}}.parquet\nfrequency: 1h\n"
    )
    return path


def _cli(capsys, *args) -> tuple[int, dict | None, str]:
    code = main([*map(str, args), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import stgraph.serving.output as run
    from stgraph.cli import main

    marker = Path(sys.argv[1])
    original, calls = run._emit, []

    def emit(handle, data):  # the third tick stops half-way through its bytes
        calls.append(1)
        if len(calls) == 3:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            marker.touch()
            time.sleep(600)
        original(handle, data)

    run._emit = emit
    sys.exit(main(sys.argv[2:]))
    """
)


def test_backfill_killed_mid_write_resumes_to_identical_files(toy, tmp_path, capsys, _session_home):
    clean = tmp_path / "clean"
    clean.mkdir()
    code, result, err = _cli(
        capsys, "job", "backfill", _job_file(clean, toy["csv"]), "--start", TICKS[0],
        "--end", TICKS[1],
    )  # fmt: skip
    assert code == 0, err
    assert len(result["written"]) == 5 and result["skipped"] == []
    reference = {p.name: p.read_bytes() for p in (clean / "out").iterdir()}
    assert sorted(reference) == [f"20240102T0{h}00.parquet" for h in range(5)]

    killed = tmp_path / "killed"
    killed.mkdir()
    job = _job_file(killed, toy["csv"])
    marker = tmp_path / "writing"
    args = ["job", "backfill", str(job), "--start", TICKS[0], "--end", TICKS[1]]
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(marker), *args],
        env=store_env(_session_home),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the backfill never reached its third tick"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = killed / "out"
    names = sorted(os.listdir(out))
    # Two complete ticks, the third only as a torn temporary file (and the dead writer's lock).
    assert [n for n in names if not n.startswith(".") and n.endswith(".parquet")] == [
        "20240102T0000.parquet",
        "20240102T0100.parquet",
    ]
    assert any(n.startswith(".20240102T0200.parquet.") and n.endswith(".tmp") for n in names)

    code, result, err = _cli(capsys, *args[:-4], "--start", TICKS[0], "--end", TICKS[1])
    assert code == 0, err
    assert len(result["skipped"]) == 2 and len(result["written"]) == 3
    assert sorted(os.listdir(out)) == sorted(reference)  # no temporary or lock file left
    for name, data in reference.items():
        assert (out / name).read_bytes() == data, name


def test_job_run_is_idempotent_and_score_logs_mae_per_horizon(toy, tmp_path, capsys):
    job = _job_file(tmp_path, toy["csv"], "scored")
    code, result, err = _cli(capsys, "job", "run", job)
    assert code == 0, err
    [written] = result["written"]
    assert written["as_of"] == str(toy_frame()["timestamp"].iloc[-1])
    code, result, err = _cli(capsys, "job", "run", job)
    assert code == 0 and result["written"] == [] and len(result["skipped"]) == 1, err

    code, _, err = _cli(capsys, "job", "backfill", job, "--start", TICKS[0], "--end", TICKS[1])
    assert code == 0, err
    code, score, err = _cli(capsys, "job", "score", job)
    assert code == 0, err
    assert score["forecast_files"] == 6
    # The last tick's targets lie after the data: only the 5 backfilled ticks are scored.
    assert score["scored_rows"] == 5 * 12 * 4
    assert sorted(score["mae_by_horizon"], key=int) == [str(h) for h in range(1, 13)]

    # The same number by hand for horizon 3.
    actual = toy_frame().melt(id_vars="timestamp", var_name="node", value_name="actual")
    frames = [pd.read_parquet(p) for p in sorted((tmp_path / "out").glob("*.parquet"))]
    joined = pd.concat(frames).merge(actual, on=["timestamp", "node"])
    h3 = joined[joined["horizon"] == 3]
    expected = float(np.mean(np.abs(h3["value"] - h3["actual"])))
    assert score["mae_by_horizon"]["3"] == pytest.approx(expected, rel=1e-12)

    run = mlflow.MlflowClient().get_run(score["run_id"])
    assert run.data.tags["stgraph.job"] == "scored"
    assert run.data.metrics["realised_mae_h3"] == pytest.approx(expected, rel=1e-12)
    assert {f"realised_mae_h{h}" for h in range(1, 13)} <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "realised_mae_by_as_of")
    assert len(history) == 5  # one point per forecast time: drift shows as a trend

    # Without --json the command prints the realised error per horizon as a table.
    assert main(["job", "score", str(job)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert out.splitlines()[1].split() == ["horizon", "mae", "rows"]
    assert list(rows) == [str(h) for h in range(1, 13)] + ["all"]
    assert float(rows["3"][0]) == pytest.approx(expected, abs=1e-4) and rows["3"][1] == "20"
    assert float(rows["all"][0]) == pytest.approx(score["realised_mae"], abs=1e-4)
    assert rows["all"][1] == str(5 * 12 * 4) and "240 of 288 forecast rows" in out


def test_relative_job_output_goes_under_the_stgraph_home_not_the_current_directory(
    toy, tmp_path, capsys, _session_home
):
    job = tmp_path / "relative.yaml"
    job.write_text(
        f"model_uri: models:/toy@prod\ninput: {toy['csv']}\n"
        "output: relative-test/{as_of}.parquet\nfrequency: 1h\n"
    )
    code, result, err = _cli(capsys, "job", "run", job)
    assert code == 0, err
    folder = _session_home / "forecasts" / "relative-test"
    assert result["output"] == str(folder / "{as_of}.parquet")
    assert f"output {folder / '{as_of}.parquet'}" in err  # the resolved path is printed
    [written] = result["written"]
    assert written["output"].startswith(str(folder)) and os.path.isfile(written["output"])
    assert sorted(os.listdir(tmp_path)) == ["relative.yaml"]  # nothing in the current directory
    code, score, err = _cli(capsys, "job", "score", job)  # reads them back from there
    assert code == 0 and score["forecast_files"] == 1, err


def test_job_files_are_checked(tmp_path, capsys):
    from stgraph.serving.jobs import load_job

    shipped = load_job("simulator")
    assert shipped.model_uri.startswith("models:/") and "{as_of}" in shipped.output
    assert not os.path.isabs(shipped.output)  # under $STGRAPH_HOME/forecasts, not the checkout
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_uri: models:/toy@prod\ninput: x.csv\noutput: f.parquet\nfrequency: 1h\n")
    code, _, err = _cli(capsys, "job", "run", bad)
    assert code == 2 and "must contain '{as_of}'" in err
    bad.write_text("model_uri: m\ninput: x.csv\noutptu: '{as_of}.csv'\nfrequency: 1h\n")
    code, _, err = _cli(capsys, "job", "run", bad)
    assert code == 2 and "Did you mean 'output'" in err
    code, _, err = _cli(capsys, "job", "run", "no-such-job")
    assert code == 2 and "No job named 'no-such-job'" in err
