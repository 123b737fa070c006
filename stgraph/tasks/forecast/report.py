"""What a forecast run reports about a scored split: the error by horizon, forecasts against the
truth for a few nodes, and every prediction as a long table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stgraph.tasks.base import Report


def predictions_frame(task, predictions: torch.Tensor, split: str = "test") -> pd.DataFrame:
    """Long table of a split's forecasts: ``as_of, timestamp, node, horizon, prediction, target,
    observed``."""
    anchors = task.splits[split][: predictions.shape[0]]
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


def _figure(**kwargs):
    """A figure outside pyplot: no display and no global backend switch (cron, CI, notebooks)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def horizon_figure(per_step: dict[str, list[float]], title: str, units: str, step: str):
    """Test MAE and RMSE at each horizon step, in the data's units."""
    figure = _figure(figsize=(6, 3.5))
    axis = figure.subplots()
    steps = np.arange(1, len(per_step["mae"]) + 1)
    for name, values in per_step.items():
        axis.plot(steps, values, marker="o", label=name.upper())
    axis.set_xlabel(f"horizon (steps of {step} ahead)")
    axis.set_ylabel(f"error ({units})" if units else "error")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def forecast_figure(frame: pd.DataFrame, nodes: int, horizon: int, title: str, units: str):
    """Truth and the ``horizon``-step-ahead forecast over the test period for a few nodes."""
    chosen = list(frame["node"].cat.categories[:nodes])
    figure = _figure(figsize=(9, 2.2 * len(chosen)))
    axes = figure.subplots(len(chosen), 1, sharex=True, squeeze=False)
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
        axis.set_ylabel(f"{node} ({units})" if units else str(node))
    axes[0, 0].legend(loc="lower left", fontsize="small")
    axes[0, 0].set_title(title)
    figure.tight_layout()
    return figure


def forecast_report(
    task, split: str, metrics, predictions: torch.Tensor, model_name: str, plot_nodes: int
) -> Report:
    """The plots and the prediction table of ``split`` (``metrics``: its ForecastMetrics)."""
    series = task.series
    units = str(series.attrs.get("units", "") or "")
    step = _step_text(series.freq)
    name = f"{model_name} on {series.name}, {split} split"
    report = Report()
    report.figures[f"plots/{split}_error_by_horizon.png"] = horizon_figure(
        metrics.per_step(), f"Error by horizon: {name}", units, step
    )
    frame = predictions_frame(task, predictions, split)
    if plot_nodes > 0:
        title = f"{task.horizon}-step forecast ({task.horizon} x {step}) vs truth: {name}"
        report.figures["plots/forecast_vs_truth.png"] = forecast_figure(
            frame, plot_nodes, task.horizon, title, units
        )
    report.tables[f"predictions/{split}_predictions.parquet"] = frame
    return report


def _step_text(freq: pd.Timedelta) -> str:
    minutes = freq / pd.Timedelta(minutes=1)
    return f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
