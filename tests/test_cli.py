"""The CLI's contracts: --json output, evaluate reproducing a run, data and models listings."""

import json

import mlflow
import pytest

from stgraph.cli import main

METRIC_NAMES = {
    f"{m}{s}" for m in ("mae", "rmse", "mape") for s in ("@3", "@6", "@12", "_avg12")
} | {"mape_skipped_targets"}


def _json_out(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow  # a whole fit plus an evaluate, in process: ~25 s on 2 busy cores
def test_fit_json_contract_and_evaluate_reproduces_the_test_metrics(capsys):
    summary = _json_out(capsys, ["fit", "simulator", "--model", "persistence", "--json", "--quiet"])
    assert {
        "run_id",
        "dataset",
        "model",
        "epochs",
        "best_epoch",
        "seconds_per_epoch",
        "test",
    } <= set(summary)
    assert set(summary["test"]) == METRIC_NAMES
    assert summary["dataset"] == "simulator" and summary["model"] == "persistence"
    # persistence degrades with the horizon on traffic speeds
    assert summary["test"]["mae@3"] < summary["test"]["mae@6"] < summary["test"]["mae@12"]

    again = _json_out(capsys, ["evaluate", summary["run_id"], "--json"])
    for name, value in summary["test"].items():
        assert again["test"][name] == pytest.approx(value, rel=1e-6)

    run = mlflow.MlflowClient().get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "persistence"
    assert run.data.metrics["test_mae_at12"] == pytest.approx(summary["test"]["mae@12"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"])}
    assert {"config.yaml", "checkpoint", "plots", "predictions"} <= artifacts


def test_data_list_info_and_models(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "los-loop" in out and "simulator" in out and "pems-bay" in out
    assert main(["data", "info", "los-loop"]) == 0
    assert "format: tgcn-csv" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "persistence" in out and "hidden = 64" in out


def test_download_offline_fails_fast_naming_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(tmp_path))
    code = main(["fit", "metr-la"])
    err = capsys.readouterr().err
    assert code == 2
    assert "metr-la.h5" in err and str(tmp_path / "metr-la") in err


# ----------------------------------------------------------------------------- issue #19
def _tiny_csv(path):
    """300 five-minute steps x 3 nodes: enough for a one-epoch STID fit in a second."""
    import numpy as np
    import pandas as pd

    t = np.arange(300)
    columns = {f"s{i}": 50.0 + 10.0 * np.sin(t / 7.0 + i) for i in range(3)}
    stamps = pd.date_range("2024-01-01", periods=300, freq="5min")
    pd.DataFrame({"timestamp": stamps, **columns}).to_csv(path, index=False)
    return path


TINY_FIT = [
    "--model", "stid", "--epochs", "2", "--batch-size", "16", "--quiet",
    "--set", "model.params.hidden=8", "--set", "model.params.num_layers=1",
    "--set", "tracking.log_model=false", "--set", "task.params.plot_nodes=0",
    "--set", "train.patience=null",
]  # fmt: skip


def test_help_names_existing_commands_and_every_fit_flag(capsys):
    from stgraph.cli import build_parser

    parser = build_parser()
    top = parser.format_help()
    assert "describe" not in top  # `data describe` does not exist; `data info` does
    assert "data info" in top and "runs clean" in top
    assert "130 interrupted by Ctrl-C" in top and "143 terminated by SIGTERM" in top
    commands = parser._subparsers._group_actions[0].choices
    data = commands["data"]._subparsers._group_actions[0].choices
    assert set(data) == {"list", "info", "download"}
    undocumented = [
        action.option_strings[0]
        for action in commands["fit"]._actions
        if action.option_strings and not action.help
    ]
    assert undocumented == []  # --epochs, --batch-size, --lr and --seed had none
    for flag in ("--epochs", "--batch-size", "--lr", "--seed"):
        [action] = [a for a in commands["fit"]._actions if flag in a.option_strings]
        assert f"train.{flag[2:].replace('-', '_')}" in action.help


def test_data_list_says_which_datasets_have_their_files(capsys, tmp_path, monkeypatch):
    from stgraph.data.cards import load_card

    monkeypatch.setenv("STGRAPH_DATA_DIR", str(tmp_path))
    (tmp_path / "los-loop").mkdir()
    for source in load_card("los-loop").files:
        (tmp_path / "los-loop" / source.name).write_text("x")
    (tmp_path / "metr-la").mkdir()
    (tmp_path / "metr-la" / "metr-la.h5").write_text("x")  # adj_mx.pkl is missing
    listing = _json_out(capsys, ["data", "list", "--json"])
    files = {row["name"]: row["files"] for row in listing["datasets"]}
    assert files["los-loop"] == "present"
    assert files["metr-la"] == "missing" and files["pems-bay"] == "missing"
    assert files["simulator"] == "generated"
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert rows["los-loop"] == "present" and rows["simulator"] == "generated"


def test_models_lists_train_data_settings_and_whole_first_sentences(capsys):
    from stgraph.cli.commands import _summary
    from stgraph.models import MODELS

    listing = _json_out(capsys, ["models", "--json"])
    assert listing["settings"]["train"]["lr"] == 1e-3
    assert listing["settings"]["data"]["data_dir"] is None
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "train.lr = 0.001  learning rate" in out
    assert "train.warmup_steps = 0" in out and "data.split = {}" in out
    assert "tracking.register = None" in out and "model.params.hidden = 64" in out

    class Cited:
        """Attention as in Xu et al. (arXiv 2001.02908, e.g. Fig. 2), with a head. More."""

    assert (
        _summary(Cited) == "Attention as in Xu et al. (arXiv 2001.02908, e.g. Fig. 2), with a head."
    )
    for name in MODELS.names():
        summary = _summary(MODELS.get(name))
        line = next(line for line in out.splitlines() if line.startswith(f"{name} ("))
        assert line.endswith(summary) and summary.endswith("."), line
        assert summary.count("(") == summary.count(")") and "``" not in summary, summary
        assert not summary.endswith((" al.", " e.g.")), summary


def test_unknown_run_is_not_a_run_without_config(capsys):
    import mlflow

    missing = "0123456789abcdef0123456789abcdef"
    for argv in (["evaluate", missing], ["fit", "simulator", "--resume", missing]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no such run" in err and missing in err and "config.yaml" not in err, err

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("not-a-fit") or client.get_experiment(
        client.create_experiment("not-a-fit")
    )
    run = client.create_run(experiment.experiment_id)
    client.set_terminated(run.info.run_id)
    assert main(["evaluate", run.info.run_id]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "no config.yaml" in err and "not a `stgraph fit` run" in err


def _interrupting_fit(exception):
    """A `pipeline.fit` that opens its MLflow run and is stopped in it by ``exception()``."""

    def fit(config, resume_run_id=None, quiet=False):
        from stgraph.tracking.tracker import Tracker

        with Tracker("interrupted", "interrupted") as tracker:
            mlflow.set_tag("interrupt-test", tracker.run_id)
            exception()
        raise AssertionError("not interrupted")

    return fit


def test_sigterm_exits_143_and_ctrl_c_130_with_the_run_killed(capsys, monkeypatch):
    import os
    import signal
    import time

    from stgraph import pipeline

    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)  # the tracker's handler raises in this thread
        time.sleep(30)

    def ctrl_c():
        raise KeyboardInterrupt

    for exception, code, message in (
        (sigterm, 143, "stgraph: terminated by SIGTERM"),
        (ctrl_c, 130, "stgraph: interrupted"),
    ):
        monkeypatch.setattr(pipeline, "fit", _interrupting_fit(exception))
        assert main(["fit", "simulator", "--model", "persistence"]) == code
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == message and "Traceback" not in err
        run = mlflow.last_active_run()
        assert run.data.tags["interrupt-test"] == run.info.run_id
        assert run.info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the run


def test_finished_fit_removes_its_checkpoints_killed_keeps_them_runs_clean_prunes(
    capsys, tmp_path, monkeypatch
):
    import os

    from stgraph.tracking.store import runs_dir
    from stgraph.tracking.tracker import Tracker

    csv = _tiny_csv(tmp_path / "tiny.csv")
    finished = _json_out(capsys, ["fit", str(csv), *TINY_FIT, "--json"])
    assert not (runs_dir() / finished["run_id"]).exists()  # the model is in MLflow
    # Nothing to resume, and asking leaves the finished run as it was.
    assert main(["fit", str(csv), "--resume", finished["run_id"]]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    client = mlflow.MlflowClient()
    assert client.get_run(finished["run_id"]).info.status == "FINISHED"

    log_metrics = Tracker.log_metrics

    def stop_after_epoch_1(self, metrics, step=0, prefix=""):
        log_metrics(self, metrics, step, prefix)
        if step == 1:
            raise KeyboardInterrupt  # Ctrl-C once the first epoch's checkpoint is written

    monkeypatch.setattr(Tracker, "log_metrics", stop_after_epoch_1)
    assert main(["fit", str(csv), *TINY_FIT]) == 130
    killed = mlflow.last_active_run().info.run_id
    monkeypatch.setattr(Tracker, "log_metrics", log_metrics)
    assert client.get_run(killed).info.status == "KILLED"
    assert (runs_dir() / killed / "checkpoint.pt").is_file()  # for --resume

    experiment = client.get_run(killed).info.experiment_id
    running = client.create_run(experiment).info.run_id  # a fit in progress elsewhere
    (runs_dir() / running).mkdir()
    (runs_dir() / running / "checkpoint.pt").write_bytes(b"x")
    stranger = runs_dir() / ("f" * 32)  # a run of another MLflow store
    stranger.mkdir()
    capsys.readouterr()

    result = _json_out(capsys, ["runs", "clean", "--older-than", "1", "--json"])
    assert result["removed"] == []  # written just now
    old = os.stat(runs_dir() / killed / "checkpoint.pt").st_mtime - 2 * 86400
    os.utime(runs_dir() / killed / "checkpoint.pt", (old, old))
    assert main(["runs", "clean", "--older-than", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {killed}  KILLED" in out and running not in out.split("kept")[0]
    assert (runs_dir() / killed).is_dir()
    result = _json_out(capsys, ["runs", "clean", "--older-than", "1", "--json"])
    assert [entry["run_id"] for entry in result["removed"]] == [killed]
    assert not (runs_dir() / killed).exists()
    kept = {entry["run_id"]: entry["reason"] for entry in result["kept"]}
    assert kept[running] == "RUNNING" and "no such run" in kept[stranger.name]
    assert (runs_dir() / running).is_dir() and stranger.is_dir()
    client.set_terminated(running)
    (runs_dir() / running / "checkpoint.pt").unlink()
    stranger.rmdir()


def test_your_own_checkins_fit_with_task_next_location(capsys, tmp_path):
    """`stgraph fit checkins.csv --task next-location`: a long table of check-ins with local
    times (UTC offsets), no categories and no coordinates, through the whole fit."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for user in range(6):
        start = pd.Timestamp("2024-01-01 08:00")  # a Monday
        for week in range(7):
            for visit in range(3):  # home -> a favourite -> one of 8 places, each week
                place = ["home", f"fav{user % 3}", f"p{rng.integers(8)}"][visit]
                when = start + pd.Timedelta(weeks=week, days=visit, hours=2 * visit)
                rows.append((f"user{user}", f"{when.isoformat()}-05:00", place))
    frame = pd.DataFrame(rows, columns=["User", "Timestamp", "Location"])  # any column case
    path = tmp_path / "checkins.csv"
    frame.to_csv(path, index=False)
    loose = "task.params.checkins={min_user_records: 5, min_location_records: 2}"
    code = main(
        ["fit", str(path), "--task", "next-location", "--model", "most-frequent",
         "--batch-size", "4", "--set", loose, "--json", "--quiet"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "next-location" and result["model"] == "most-frequent"
    test = result["test"]
    # 6 users x 7 weekly sessions: 1 history, 1 validation, ceil(0.2 x 6) = 2 test each.
    assert set(test) >= {"acc@1", "acc@5", "acc@10", "acc@20", "ndcg@10", "mrr"}
    assert 0.0 <= test["acc@1"] <= test["acc@5"] <= test["acc@10"] <= test["acc@20"] <= 1.0
    run = mlflow.get_run(result["run_id"])
    assert run.data.params["task.name"] == "next-location"
