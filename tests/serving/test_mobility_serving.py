"""A next-location model served end to end on real check-ins (Foursquare NYC, LSTM-TrajGAN
release): `stgraph fit --register`, an alias, then `stgraph forecast` and the MLflow pyfunc
model on users' recent check-ins, and the report the fit left in its MLflow run.

One small GRU (2 epochs) is fitted in process once for the module."""

from __future__ import annotations

import contextlib
import io
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from stgraph.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.real_data]

DATASET = "foursquare-nyc-trajgan"
NAME = "mobility-gru"
EPOCHS = 2
COLUMNS = ["as_of", "user", "horizon", "rank", "location", "score"]


def _main_json(argv: list[str]) -> dict:
    """``main(argv + ["--json"])``; its last stdout line as JSON (no capsys: module scope)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--json"])
    assert code == 0, err.getvalue()[-3000:]
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(_session_home, tmp_path_factory):
    """The MLflow store conftest gives each test, for the module's fixtures (which outlive one
    test); yields a patcher for their working directories."""
    work = tmp_path_factory.mktemp("mobility-serving")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STGRAPH_HOME", str(_session_home))
        patch.setenv("STGRAPH_CACHE_DIR", str(work / "cache"))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{_session_home / 'mlflow.db'}")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("STGRAPH_DATA_DIR", raising=False)
        yield patch


@pytest.fixture(scope="module")
def fitted(store, shared_data, tmp_path_factory):
    """Fit, register and promote ``mobility-gru``; the data as the model saw it."""
    from stgraph.data.checkins import make_sessions, open_checkins
    from stgraph.pipeline import resolve_config
    from stgraph.serving.registry import promote
    from stgraph.tasks.next_location import NextLocationConfig

    data_dir = shared_data / "mobility" / DATASET
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("fit"))  # a new experiment's artifacts: ./mlruns
        argv = ["fit", DATASET, "--data-dir", str(data_dir), "--model", "gru",
                "--epochs", str(EPOCHS), "--threads", "1", "--register", NAME, "--quiet",
                "--set", "model.params={hidden: 32, location_dim: 32, user_dim: 16}"]  # fmt: skip
        summary = _main_json(argv)
        promote(NAME, summary["registered_version"], "prod")
    # The check-ins after the task's preprocessing: the model's vocabulary and each user's
    # history exactly as training read it.
    params = resolve_config(DATASET, model="gru").task.params
    checkins = NextLocationConfig(**params).checkin_config()
    raw = open_checkins(DATASET, data_dir)
    sessions = make_sessions(raw, checkins)
    return {"summary": summary, "raw": raw, "sessions": sessions, "log": sessions.log}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _events(log, users: list[str]) -> pd.DataFrame:
    """The check-ins of ``users`` in ``log`` as a request table with the original names."""
    names = np.asarray(log.users, dtype=object)[log.user]
    frame = pd.DataFrame(
        {
            "user": names.astype(str),
            "timestamp": log.time.astype("datetime64[s]"),
            "location": np.asarray(log.locations, dtype=object)[log.location].astype(str),
            "category": np.asarray(log.categories, dtype=object)[log.category].astype(str),
        }
    )
    return frame[frame["user"].isin(users)].reset_index(drop=True)


@pytest.fixture(scope="module")
def recent(store, fitted, tmp_path_factory):
    """The last 15 raw check-ins of three users (some at locations the filters dropped), one
    check-in of a user the model never saw, and their `stgraph forecast` table."""
    log = fitted["log"]
    users = [str(u) for u in np.asarray(log.users)[np.unique(log.user)[[0, 7, 42]]]]
    frame = _events(fitted["raw"], users).groupby("user", sort=False).tail(15)
    stranger = frame.iloc[[0]].assign(user="no-such-user")
    frame = pd.concat([frame, stranger], ignore_index=True)
    folder = tmp_path_factory.mktemp("recent")
    frame.to_csv(folder / "recent.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        summary = _main_json(
            ["forecast", f"models:/{NAME}@prod", "--input", str(folder / "recent.csv"),
             "--output", str(folder / "out.parquet")]
        )  # fmt: skip
    table = pd.read_parquet(folder / "out.parquet")
    return {"users": users, "frame": frame, "csv": folder / "recent.csv", "table": table,
            "summary": summary}  # fmt: skip


def test_forecast_lists_each_users_top_locations(fitted, recent):
    table, frame = recent["table"], recent["frame"]
    vocabulary = set(np.asarray(fitted["log"].locations).astype(str))
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert set(table["model_version"]) == {fitted["summary"]["registered_version"]}
    assert sorted(table["user"].unique()) == sorted(recent["users"])  # not the stranger
    known = frame[frame["location"].isin(vocabulary)]
    assert len(known) < len(frame) - 1  # the filters dropped some of these locations
    for user, rows in table.groupby("user"):
        assert len(rows) == 10  # top_k of the pipeline
        assert rows["rank"].tolist() == list(range(1, 11))
        assert (np.diff(rows["score"].to_numpy()) <= 0).all()
        assert rows["location"].is_unique and set(rows["location"]) <= vocabulary
        assert (rows["horizon"] == 1).all()
        # the user's last check-in at a location the model knows
        last = pd.Timestamp(known[known["user"] == user]["timestamp"].max())
        assert (rows["as_of"] == last).all()

    run = mlflow.MlflowClient().get_run(recent["summary"]["run_id"])
    unknown = frame[frame["user"] != "no-such-user"]["location"].map(lambda x: x not in vocabulary)
    assert run.data.metrics["input_rows"] == len(frame)
    assert run.data.metrics["unknown_user_rows"] == 1
    assert run.data.metrics["unknown_location_rows"] == unknown.sum()
    assert run.data.metrics["output_rows"] == len(table) == 30


def test_pyfunc_model_returns_the_cli_table(recent):
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@prod")
    request = pd.read_csv(recent["csv"], dtype=str)  # as a client would send it: text
    served = model.predict(request)
    expected = recent["table"][COLUMNS]
    assert list(served.columns) == COLUMNS
    pd.testing.assert_frame_equal(served, expected, check_dtype=False)

    # Week-only data: the model reads weekday, hour and gaps, so real dates that keep the
    # weekdays (the synthetic 1970 weeks moved 2,800 weeks on) give the same ranking.
    moved = request.assign(
        timestamp=pd.to_datetime(request["timestamp"]) + pd.Timedelta(weeks=2800)
    )
    later = model.predict(moved)
    assert later["location"].tolist() == served["location"].tolist()
    assert later["score"].tolist() == pytest.approx(served["score"].tolist(), rel=1e-5)
    assert (later["as_of"] - served["as_of"] == pd.Timedelta(weeks=2800)).all()


def _test_predictions(run_id: str, folder) -> pd.DataFrame:
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="predictions/test_predictions.parquet", dst_path=str(folder)
    )
    return pd.read_parquet(path)


def test_served_ranking_equals_the_runs_test_predictions(fitted, tmp_path):
    """A test sample's history sent to the served model gets the ranking the run logged for
    that sample: no skew between how training scored and how serving reads check-ins."""
    logged = _test_predictions(fitted["summary"]["run_id"], tmp_path)
    log = fitted["log"]
    samples = logged[logged["rank"] == 1].drop_duplicates("user").head(3)
    requests = []
    for sample in samples.itertuples():
        history = _events(log, [sample.user])
        stamps = pd.to_datetime(history["timestamp"])
        at_target = (stamps == sample.time) & (history["location"] == sample.target)
        after_as_of = (stamps.shift(1) == sample.as_of).to_numpy()
        (position,) = np.flatnonzero(at_target.to_numpy() & after_as_of)
        requests.append(history.iloc[:position])  # every check-in before the target
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@prod").predict(pd.concat(requests))
    expected = logged.merge(samples[["user", "as_of"]], on=["user", "as_of"])
    expected = expected.sort_values(["user", "rank"]).reset_index(drop=True)
    served = served.sort_values(["user", "rank"]).reset_index(drop=True)
    assert len(served) == len(expected) == 3 * 10
    assert served["as_of"].tolist() == expected["as_of"].tolist()
    assert served["location"].tolist() == expected["location"].tolist()
    assert served["score"].tolist() == pytest.approx(expected["score"].tolist(), rel=1e-4)


def test_fit_run_holds_the_report_and_the_validation_curve(fitted, tmp_path):
    summary = fitted["summary"]
    client = mlflow.MlflowClient()
    run_id = summary["run_id"]
    paths = {
        f.path
        for folder in ("plots", "predictions", "checkpoint")
        for f in client.list_artifacts(run_id, folder)
    }
    assert {
        "plots/test_acc_by_k.png",
        "plots/test_accuracy_by_history.png",
        "predictions/test_predictions.parquet",
        "checkpoint/model.pt",
    } <= paths
    assert "config.yaml" in {f.path for f in client.list_artifacts(run_id)}
    version = client.get_model_version(NAME, summary["registered_version"])
    assert version.run_id == run_id  # the registered pyfunc model is this run's

    history = client.get_metric_history(run_id, "val_mrr")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    assert all(0 < m.value < 1 for m in history)

    # The logged test metrics agree with the logged predictions (ranks of the true location;
    # NaN where it cannot be ranked, a miss).
    logged = _test_predictions(run_id, tmp_path)
    per_sample = logged[logged["rank"] == 1]
    rank = per_sample["target_rank"].to_numpy()
    metrics = client.get_run(run_id).data.metrics
    assert len(per_sample) == len(fitted["sessions"].samples("test"))
    assert metrics["test_acc_at1"] == pytest.approx(np.mean(rank == 1), abs=1e-6)
    assert metrics["test_acc_at5"] == pytest.approx(np.mean(rank <= 5), abs=1e-6)
    assert metrics["test_mrr"] == pytest.approx(np.mean(np.nan_to_num(1 / rank)), abs=1e-5)
    recurring = rank[per_sample["recurring"].to_numpy()]
    assert metrics["test_recurring/acc_at1"] == pytest.approx(np.mean(recurring == 1), abs=1e-6)
    # the test table's top location is the prediction's: rank 1 is a hit exactly when listed
    hits = per_sample["location"] == per_sample["target"]
    assert (hits.to_numpy() == (rank == 1)).all()


def test_a_next_location_job_runs_and_scores_miss_at_1(store, fitted, tmp_path):
    """A job definition for a next-location model: one tick from a check-in history, then
    `job score` against each user's next check-in (error 1 - hit@1, named miss@1)."""
    log = fitted["log"]
    users = [str(u) for u in np.asarray(log.users)[np.unique(log.user)[[3, 9, 27]]]]
    history = _events(log, users)
    history.to_csv(tmp_path / "history.csv", index=False)
    # The tick: before each user's last three check-ins, so every user has a next one.
    as_of = history.groupby("user")["timestamp"].apply(lambda t: t.iloc[-4]).min()
    job = tmp_path / "checkins.yaml"
    job.write_text(
        f"model_uri: models:/{NAME}@prod\ninput: {tmp_path / 'history.csv'}\n"
        f"output: {tmp_path / 'out'}/{{as_of}}.parquet\nfrequency: 1D\nexperiment: mob-jobs\n"
    )
    ran = _main_json(["job", "run", str(job), "--as-of", str(as_of)])
    [written] = ran["written"]
    table = pd.read_parquet(written["output"])
    score = _main_json(["job", "score", str(job)])
    assert score["error"] == "miss@1" and score["scored_rows"] == len(users)
    # By hand: each user's top location against their first check-in after their as_of.
    misses = []
    for user, rows in table[table["rank"] == 1].groupby("user"):
        later = history[(history["user"] == user) & (history["timestamp"] > rows["as_of"].iloc[0])]
        misses.append(float(rows["location"].iloc[0] != later["location"].iloc[0]))
    assert score["mae_by_horizon"]["1"] == pytest.approx(np.mean(misses))
    run = mlflow.get_run(score["run_id"])
    assert run.data.metrics["realised_miss_at1"] == pytest.approx(np.mean(misses))
