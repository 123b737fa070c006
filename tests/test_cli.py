"""The CLI's contracts: --json output, evaluate reproducing a run, data and models listings."""

import json

import mlflow
import pytest

from stgraph.cli import main

METRIC_NAMES = {f"{m}{s}" for m in ("mae", "rmse", "mape") for s in ("@3", "@6", "@12", "_avg12")}


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
