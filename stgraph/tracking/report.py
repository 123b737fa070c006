"""Evaluation artifacts of a run: per-horizon error plot, forecast-vs-truth plot, test
predictions as Parquet."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs from cron and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def predictions_frame(task, predictions: torch.Tensor) -> pd.DataFrame:
    """Long table of the test forecasts: ``as_of, timestamp, node, horizon, prediction, target,
    observed``."""
    anchors = task.splits.test[: predictions.shape[0]]
    s, h, n = predictions.shape[:3]
    stamps = task.series.timestamps
    target_index = anchors[:, None] + np.arange(1, h + 1)
    targets = task.series.values[target_index][..., 0]
    observed = task.series.mask[target_index][..., 0]
    return pd.DataFrame(
        {
            "as_of": np.repeat(stamps[anchors], h * n),
            "timestamp": np.repeat(stamps[target_index.reshape(-1)], n),
            "node": pd.Categorical(np.tile(np.asarray(task.series.node_ids), s * h)),
            "horizon": np.tile(np.repeat(np.arange(1, h + 1, dtype=np.int16), n), s),
            "prediction": predictions[..., 0].reshape(-1).numpy(),
            "target": targets.reshape(-1),
            "observed": observed.reshape(-1),
        }
    )


def horizon_figure(per_step: dict[str, list[float]]):
    figure, axis = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(per_step["mae"]) + 1)
    for name, values in per_step.items():
        axis.plot(steps, values, marker="o", label=name.upper())
    axis.set_xlabel("horizon (steps ahead)")
    axis.set_ylabel("test error")
    axis.set_title("Test error by horizon")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def forecast_figure(frame: pd.DataFrame, nodes: int, horizon: int):
    """Truth and the ``horizon``-step-ahead forecast over the test period for a few nodes."""
    chosen = list(frame["node"].cat.categories[:nodes])
    figure, axes = plt.subplots(
        len(chosen), 1, figsize=(9, 2.2 * len(chosen)), sharex=True, squeeze=False
    )
    subset = frame[(frame["horizon"] == horizon) & frame["node"].isin(chosen)]
    for axis, node in zip(axes[:, 0], chosen):
        rows = subset[subset["node"] == node]
        truth = rows["target"].where(rows["observed"])
        axis.plot(rows["timestamp"], truth, color="black", lw=1, label="truth")
        axis.plot(
            rows["timestamp"],
            rows["prediction"],
            color="tab:red",
            lw=1,
            label=f"{horizon}-step forecast",
        )
        axis.set_ylabel(str(node))
    axes[0, 0].legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    return figure


def log_evaluation(
    tracker, metrics, task, predictions: torch.Tensor, workdir: Path, plot_nodes: int
) -> None:
    """Log the plots and the predictions of the test split (``metrics``: its ForecastMetrics)."""
    figure = horizon_figure(metrics.per_step())
    tracker.log_figure(figure, "plots/test_error_by_horizon.png")
    plt.close(figure)
    frame = predictions_frame(task, predictions)
    if plot_nodes > 0:
        figure = forecast_figure(frame, plot_nodes, task.horizon)
        tracker.log_figure(figure, "plots/forecast_vs_truth.png")
        plt.close(figure)
    path = workdir / "test_predictions.parquet"
    frame.to_parquet(path, index=False)
    tracker.log_artifact(path, "predictions")
