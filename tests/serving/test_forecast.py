"""`stgraph forecast`: same numbers as the `Forecaster`, byte-identical reruns, clear errors
with no output, and one writer per output (the lock)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time

import mlflow
import pandas as pd
import pytest

from stgraph.cli import main
from tests.serving.toy import NODES, store_env, toy_frame, trained_toy

pytestmark = pytest.mark.slow

COLUMNS = ["as_of", "timestamp", "node", "horizon", "value", "model_uri", "model_version"]


@pytest.fixture(scope="module")
def toy(_session_home):
    return trained_toy(_session_home)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a new experiment's artifacts under ./mlruns


def _forecast(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["forecast", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), err


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_output_equals_forecaster_and_is_logged(toy, tmp_path, capsys):
    from stgraph.serving.bundle import load_predictor

    as_of = "2024-01-02T12:00"
    out = tmp_path / "out" / "f.parquet"
    code, summary, err = _forecast(
        capsys, "models:/toy@prod", "--input", toy["csv"], "--as-of", as_of, "--output", out
    )
    assert code == 0, err
    table = pd.read_parquet(out)
    assert list(table.columns) == COLUMNS
    assert len(table) == 12 * len(NODES)
    assert (table["as_of"] == pd.Timestamp(as_of)).all()
    assert set(table["model_uri"]) == {"models:/toy@prod"}
    assert set(table["model_version"]) == {toy["version"]}

    bundle = mlflow.artifacts.download_artifacts(
        f"runs:/{toy['run_id']}/checkpoint/model.pt", dst_path=str(tmp_path / "bundle")
    )
    history = toy_frame().set_index("timestamp")
    # ns stamps: `Forecaster._window` compares raw int64 steps with a frequency in ns.
    history.index = history.index.as_unit("ns")
    expected = load_predictor(bundle).forecast(history, as_of=pd.Timestamp(as_of))
    assert table["timestamp"].tolist() == expected["timestamp"].tolist()
    assert table["node"].tolist() == expected["node"].tolist()
    assert table["horizon"].tolist() == expected["horizon"].tolist()
    assert table["value"].tolist() == expected["value"].tolist()  # exactly the same numbers

    run = mlflow.MlflowClient().get_run(summary["run_id"])
    experiment = mlflow.MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.name == "forecast-jobs" and run.info.status == "FINISHED"
    digest = hashlib.sha256(toy["csv"].read_bytes()).hexdigest()
    assert run.data.params["input_sha256"] == digest
    assert run.data.params["model_version"] == toy["version"]
    assert run.data.params["as_of"] == str(pd.Timestamp(as_of))
    assert run.data.metrics["output_rows"] == len(table)
    assert run.data.metrics["duration_seconds"] > 0


def test_reruns_and_layouts_give_identical_output(toy, tmp_path, capsys):
    frame = toy_frame()
    long = frame.melt(id_vars="timestamp", var_name="node", value_name="value")
    long.to_csv(tmp_path / "long.csv", index=False)
    frame.to_parquet(tmp_path / "wide.parquet", index=False)
    outputs = {}
    for name, source in [
        ("a", toy["csv"]),
        ("b", toy["csv"]),
        ("long", tmp_path / "long.csv"),
        ("wide", tmp_path / "wide.parquet"),
    ]:
        code, _, err = _forecast(
            capsys, "models:/toy/1", "--input", source, "--output", tmp_path / f"{name}.parquet"
        )
        assert code == 0, err
        outputs[name] = (tmp_path / f"{name}.parquet").read_bytes()
    assert outputs["a"] == outputs["b"]  # byte-identical rerun
    assert outputs["long"] == outputs["a"] and outputs["wide"] == outputs["a"]
    code, _, err = _forecast(
        capsys, "models:/toy/1", "--input", toy["csv"], "--output", tmp_path / "a.csv"
    )
    assert code == 0, err
    from stgraph.serving.output import read_output

    pd.testing.assert_frame_equal(
        read_output(tmp_path / "a.csv"), read_output(tmp_path / "a.parquet"), check_dtype=False
    )


def _bad_inputs(tmp_path):
    frame = toy_frame()
    cases = {}
    renamed = frame.rename(columns={"s3": "s9"})
    renamed.to_csv(tmp_path / "nodes.csv", index=False)
    cases["nodes"] = ("models:/toy@prod", tmp_path / "nodes.csv", "node ids differ")
    frame.head(5).to_csv(tmp_path / "short.csv", index=False)
    cases["short"] = ("models:/toy@prod", tmp_path / "short.csv", "needs 12 steps")
    frame.iloc[::2].to_csv(tmp_path / "freq.csv", index=False)
    cases["freq"] = ("models:/toy@prod", tmp_path / "freq.csv", "trained on 0 days 00:05:00")
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    cases["no-model"] = ("models:/nope/1", good, "no registered model named 'nope'")
    cases["no-version"] = ("models:/toy/99", good, "has no version '99'")
    cases["no-run"] = ("runs:/0123456789abcdef/model", good, "no run '0123456789abcdef'")
    cases["no-alias"] = ("models:/toy@staging", good, "has no alias 'staging'")
    cases["bad-uri"] = ("toy", good, "is not one of")
    return cases


def test_bad_inputs_exit_2_and_write_nothing(toy, tmp_path, capsys):
    for name, (uri, source, message) in _bad_inputs(tmp_path).items():
        folder = tmp_path / f"out-{name}"
        folder.mkdir()
        code, _, err = _forecast(capsys, uri, "--input", source, "--output", folder / "f.parquet")
        assert code == 2, (name, err)
        assert err.startswith("stgraph: error: ") and message in err, (name, err)
        assert "Traceback" not in err
        assert _leftovers(folder) == [], name  # no output, no lock file, no temporary file


def test_a_held_lock_stops_the_call(toy, tmp_path, capsys):
    out = tmp_path / "f.parquet"
    with open(tmp_path / "f.parquet.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = _forecast(capsys, "models:/toy@prod", "--input", toy["csv"], "--output", out)
    assert code == 75
    assert "f.parquet.lock" in err and "held by another forecast job" in err
    assert not out.exists()


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import stgraph.serving.output as run
    from stgraph.cli import main

    release = Path(sys.argv[1])

    def slow(handle, data):  # half the bytes, then wait: a writer caught mid-write
        handle.write(data[: len(data) // 2])
        handle.flush()
        Path(str(release) + ".writing").touch()
        while not release.exists():
            time.sleep(0.05)
        handle.write(data[len(data) // 2 :])

    run._emit = slow
    sys.exit(main(sys.argv[2:]))
    """
)


def test_two_concurrent_calls_one_writes_one_is_refused(toy, tmp_path, capsys, _session_home):
    reference = tmp_path / "reference.parquet"
    code, _, err = _forecast(
        capsys, "models:/toy@prod", "--input", toy["csv"], "--output", reference
    )
    assert code == 0, err
    out = tmp_path / "shared" / "f.parquet"
    args = ["forecast", "models:/toy@prod", "--input", str(toy["csv"]), "--output", str(out)]
    env = store_env(_session_home)
    release = tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(release), *args],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "release.writing").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first writer never started writing"
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "stgraph", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 75, second.stderr
        assert f"{out}.lock" in second.stderr
        release.touch()
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert out.read_bytes() == reference.read_bytes()  # intact, and equal across processes
    assert sorted(os.listdir(out.parent)) == ["f.parquet"]  # lock and temporary file gone


def test_zoned_as_of_against_a_naive_input_is_an_input_error():
    from types import SimpleNamespace

    import pandas as pd

    from stgraph.errors import InputError
    from stgraph.tasks.forecast.history import parse_timestamp

    naive = SimpleNamespace(
        wide=pd.DataFrame(index=pd.date_range("2024-01-01", periods=3, freq="h"))
    )
    assert parse_timestamp("2024-01-01 01:00", naive, "--as-of") == pd.Timestamp("2024-01-01 01:00")
    with pytest.raises(InputError, match="--start 2024-01-01T01:00\\+01:00 has a time zone"):
        parse_timestamp("2024-01-01T01:00+01:00", naive, "--start")
    with pytest.raises(InputError, match="--end 'soon' is not a timestamp"):
        parse_timestamp("soon", naive, "--end")
    zoned = SimpleNamespace(
        wide=pd.DataFrame(index=pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"))
    )
    assert parse_timestamp("2024-01-01 01:00", zoned, "--as-of").tz is not None


def test_unreadable_foreign_and_stale_bundles_are_input_errors(toy, tmp_path):
    import torch

    from stgraph.errors import InputError
    from stgraph.serving.bundle import load_predictor

    path = mlflow.artifacts.download_artifacts(
        f"runs:/{toy['run_id']}/checkpoint/model.pt", dst_path=str(tmp_path / "bundle")
    )
    bundle = torch.load(path, weights_only=False)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(InputError, match=f"Model bundle {truncated} cannot be read"):
        load_predictor(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": bundle["state_dict"]}, foreign)
    with pytest.raises(InputError, match=f"{foreign} is not a stgraph model bundle of format 2"):
        load_predictor(foreign)
    # A weight whose shape changed between versions, as gram-ode's prior_weight did.
    name, weight = next(iter(bundle["state_dict"].items()))
    bundle["state_dict"][name] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])
    stale = tmp_path / "stale.pt"
    torch.save(bundle, stale)
    with pytest.raises(InputError) as error:
        load_predictor(stale)
    message = str(error.value)
    assert message.startswith(f"Model bundle {stale}: its weights do not fit model 'stid'")
    assert "refit it" in message and f"size mismatch for {name}" in message
