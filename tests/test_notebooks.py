"""The notebooks in ``notebooks/`` run top to bottom in a real Jupyter kernel.

Each runs in a fresh working directory against the test's MLflow store and cache (see
``conftest.py``); any cell error fails the test. The kernel is this interpreter's ipykernel,
through a ``python3`` kernelspec put first on ``JUPYTER_PATH``, so a user-level kernelspec that
points at another Python cannot be picked up instead.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import ipykernel  # noqa: F401  (the kernel the notebooks run in; part of the notebooks extra)
import mlflow
import nbclient
import nbformat
import pytest

from stgraph.tracking.store import tracking_uri

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART_MODELS = {"persistence", "historical-average", "stid"}


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A ``python3`` kernelspec running ``sys.executable``, first on ``JUPYTER_PATH``."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (stgraph tests)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def execute(name: str, kernel: str, workdir: Path):
    """Run ``notebooks/<name>`` in ``workdir``; raises CellExecutionError on any cell error."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    workdir.mkdir()
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name=kernel,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    mlflow.set_tracking_uri(tracking_uri())  # the store the kernel wrote to
    return notebook


def tagged(notebook, tag: str):
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return cell


def text(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def images(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_committed_notebooks_have_no_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def check_quickstart(notebook, dataset: str) -> None:
    comparison = text(tagged(notebook, "comparison"))
    for model in QUICKSTART_MODELS:
        assert model in comparison
    assert "mae_avg12" in comparison
    assert images(notebook) >= 3  # error by horizon, forecast vs truth, per-sensor map
    runs = mlflow.search_runs(experiment_names=[f"quickstart-{dataset}"])
    assert QUICKSTART_MODELS <= set(runs["tags.model"])
    assert (runs["metrics.test_mae_avg12"] > 0).all()


@pytest.mark.slow
def test_traffic_quickstart(kernel, tmp_path):
    notebook = execute("traffic_quickstart.ipynb", kernel, tmp_path / "work")
    check_quickstart(notebook, "simulator")
    assert "coordinates: yes" in "".join(text(c) for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.real_data
def test_traffic_quickstart_los_loop(kernel, tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(shared_data / "traffic"))
    notebook = execute("traffic_quickstart.ipynb", kernel, tmp_path / "work")
    check_quickstart(notebook, "los-loop")


@pytest.mark.slow
def test_forecast_job_analysis(kernel, tmp_path):
    notebook = execute("forecast_job_analysis.ipynb", kernel, tmp_path / "work")
    assert images(notebook) >= 2
    realised = text(tagged(notebook, "realised"))
    assert "realised_mae_h12" in realised
    jobs = mlflow.search_runs(experiment_names=["forecast-job-simulator"])
    jobs = jobs[jobs["tags.stgraph.job"] == "notebook-replay"]  # not `stgraph job`'s runs
    assert len(jobs) == 1 and jobs["status"].iloc[0] == "FINISHED"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(jobs["run_id"].iloc[0], "realised_mae_h1")
    assert len(history) > 100  # one value per 30-minute tick over the ~5.6-day test period
    assert all(0 < m.value < 20 for m in history)
    assert "forecasts" in [a.path for a in client.list_artifacts(jobs["run_id"].iloc[0])]
    if importlib.util.find_spec("stgraph.serving.jobs") is not None:
        # `stgraph job backfill` + `score` on the same ticks agree with the notebook's replay.
        assert "forecasts scored" in text(tagged(notebook, "job-commands"))
        compare = text(tagged(notebook, "job-compare"))
        assert float(compare.rsplit("largest difference:", 1)[1].split()[0]) < 1e-6


MOBILITY_MODELS = {"most-frequent", "markov", "gru"}


@pytest.mark.slow
@pytest.mark.real_data
def test_mobility_quickstart(kernel, tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(shared_data / "mobility"))
    notebook = execute("mobility_quickstart.ipynb", kernel, tmp_path / "work")
    comparison = text(tagged(notebook, "comparison"))
    for model in MOBILITY_MODELS:
        assert model in comparison
    assert "recurring/acc_at1" in comparison and "explorative/mrr" in comparison
    assert images(notebook) >= 2  # Acc@k by k, the map
    runs = mlflow.search_runs(experiment_names=["quickstart-foursquare-nyc-trajgan"])
    assert MOBILITY_MODELS <= set(runs["tags.model"])
    assert ((runs["metrics.test_acc_at1"] > 0) & (runs["metrics.test_mrr"] < 1)).all()
    runs = runs.set_index("tags.model")
    # users return to their usual places: the count baseline lists the true one in its top five
    # for 0.348 of the test samples, where at most 0.443 can be ranked (the rest are places
    # outside the training vocabulary)
    assert 0.3 < runs.loc["most-frequent", "metrics.test_acc_at5"] < 0.443
    gru = mlflow.MlflowClient().get_metric_history(runs.loc["gru", "run_id"], "val_mrr")
    assert len(gru) > 1  # trained over several epochs, selected on validation


FINANCE_MODELS = {"momentum", "mlp"}


@pytest.mark.slow
@pytest.mark.real_data
def test_finance_quickstart(kernel, tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(shared_data / "finance"))
    monkeypatch.setenv("STGRAPH_NB_EPOCHS", "2")
    notebook = execute("finance_quickstart.ipynb", kernel, tmp_path / "work")
    comparison = text(tagged(notebook, "comparison"))
    for column in ("val_rank_ic", "rank_icir", "annual_return_net", "sharpe_net", *FINANCE_MODELS):
        assert column in comparison
    assert images(notebook) >= 2  # the daily IC, the NAV
    runs = mlflow.search_runs(experiment_names=["quickstart-stocknet"])
    assert FINANCE_MODELS <= set(runs["tags.model"])
    # every test day of 2017 whose label day (t + 2) is still in the data (up to 2017-09-01)
    assert (runs["metrics.test_days"] == 167).all() and (runs["metrics.test_ic_days"] == 167).all()
    assert (runs["metrics.test_rank_ic"].abs() < 0.2).all()  # a weak signal, as on real prices
    assert runs["metrics.test_annual_return_universe"].nunique() == 1  # one benchmark
    mlp = runs[runs["tags.model"] == "mlp"]["run_id"].iloc[0]
    assert len(mlflow.MlflowClient().get_metric_history(mlp, "val_rank_ic")) == 2  # 2 epochs
