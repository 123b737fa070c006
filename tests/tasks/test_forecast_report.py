"""The forecast task's report: plots that say what they show, and the prediction table."""

import dataclasses

import numpy as np
import torch

from stgraph.data.windows import split_samples
from stgraph.graphs.graph import Graph
from stgraph.tasks.forecast import ForecastTask
from tests.helpers import make_series


def test_plots_name_the_model_dataset_horizon_and_units():
    values = np.random.default_rng(0).random((60, 2)).astype(np.float32) + 1
    series = dataclasses.replace(make_series(values, name="roads"), attrs={"units": "mph"})
    splits = split_samples(series.timestamps, 3, 2, ratios=[0.6, 0.2, 0.2])
    graph = Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), 2)
    task = ForecastTask(series, graph, splits, 3, 2, plot_nodes=1)
    metrics, predictions = task.new_metrics(), []
    for batch in task.batches("test", 5):
        prediction = torch.ones_like(batch.targets.y)
        task.update_metrics(metrics, prediction, batch)
        predictions.append(prediction)
    report = task.report("test", metrics, predictions, "stid")

    by_horizon = report.figures["plots/test_error_by_horizon.png"].axes[0]
    assert by_horizon.get_title() == "Error by horizon: stid on roads, test split"
    assert by_horizon.get_ylabel() == "error (mph)"
    assert by_horizon.get_xlabel() == "horizon (steps of 5 min ahead)"
    truth = report.figures["plots/forecast_vs_truth.png"].axes[0]
    assert truth.get_title() == "2-step forecast (2 x 5 min) vs truth: stid on roads, test split"
    assert truth.get_ylabel() == "n0 (mph)"
    table = report.tables["predictions/test_predictions.parquet"]
    assert len(table) == len(splits.test) * 2 * 2  # windows x horizon x nodes
    assert (table["prediction"] == 1.0).all()
    # The table's MAE per horizon is the metrics' MAE at that step.
    observed = table[table["observed"]]
    mae = (observed["prediction"] - observed["target"]).abs().groupby(observed["horizon"]).mean()
    np.testing.assert_allclose(mae.to_numpy(), metrics.per_step()["mae"], rtol=1e-5)
