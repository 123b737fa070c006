"""The forecast task: windows over a regular series -> the next ``horizon`` steps of every node.

Models never see scalers or losses: they take scaled inputs and return scaled outputs; this task
inverse-scales predictions and scores them in the data's own units against the observed targets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from stgraph.config import deep_merge, option
from stgraph.data.config import DataConfig
from stgraph.data.scaler import StandardScaler, per_split_scalers
from stgraph.data.series import Series
from stgraph.data.views import SeriesTrainView
from stgraph.data.windows import Splits, calendar_features, split_samples
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.metrics import ForecastMetrics
from stgraph.tasks.base import TASKS, Batch, Goal, Loss, Report, Task, anchor_batches
from stgraph.tasks.forecast.batch import (
    ForecastBatch,
    ForecastContext,
    ForecastInputs,
    ForecastTargets,
)
from stgraph.tasks.forecast.predictor import Forecaster
from stgraph.tasks.forecast.report import forecast_report

LOSSES = ("mae", "mse", "huber")
NORMALIZATIONS = ("train", "per_split")


@dataclass
class ForecastConfig:
    window: int = option(12, "input steps")
    horizon: int = option(12, "forecast steps")
    loss: str = option("mae", "training loss: mae | mse | huber (masked, in the data's units)")
    normalization: str = option(
        "train",
        "train: one scaler fitted on the training steps | per_split: each split scaled with its "
        "own statistics, as GRAM-ODE's official code does (leaks the test scale; parity runs only)",
    )
    plot_nodes: int = option(4, "nodes shown in the forecast-vs-truth plot")

    def __post_init__(self) -> None:
        if self.window <= 0 or self.horizon <= 0:
            raise InputError(
                f"task.params.window and horizon must be positive, got {self.window} and "
                f"{self.horizon}."
            )
        if self.loss not in LOSSES:
            raise InputError(f"task.params.loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise InputError(
                f"task.params.normalization must be 'train' or 'per_split', "
                f"got {self.normalization!r}."
            )


@TASKS.register("forecast")
class ForecastTask(Task):
    """Windows over a `Series`, scaled with train-only statistics, scored with masked metrics.

    Args:
        series: the data; ``channels[:num_targets]`` are forecast.
        graph: the static graph the models may use.
        splits: anchors of the train/val/test samples.
        window, horizon: input and output lengths.
        num_targets: how many leading channels are targets (default 1: the card's target).
        loss: ``mae`` (masked, the field's default), ``mse`` or ``huber``.
        split_scalers: parity runs only (GRAM-ODE's official code): each split scaled with its
            own statistics.
        null_value: the card's rule for missing readings (served models apply it to new data).
    """

    name = "forecast"
    config_class = ForecastConfig
    predictor_class = Forecaster
    default_model = "stid"
    sample_noun = "windows"

    def __init__(
        self,
        series: Series,
        graph: Graph,
        splits: Splits,
        window: int = 12,
        horizon: int = 12,
        num_targets: int = 1,
        loss: str = "mae",
        report_steps: tuple[int, ...] = (3, 6, 12),
        scaler: StandardScaler | None = None,
        split_scalers: Mapping[str, StandardScaler] | None = None,
        null_value: str = "zero",
        plot_nodes: int = 4,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.series = series
        self.dataset_name = series.name
        self.graph = graph
        self.splits = splits
        self.window = window
        self.horizon = horizon
        self.num_targets = num_targets
        self.loss_name = loss
        self.report_steps = report_steps
        self.null_value = null_value
        self.plot_nodes = plot_nodes
        self.monitor = f"mae_avg{horizon}"
        view = SeriesTrainView.of(series, splits.train_steps)
        self.scaler = scaler or StandardScaler.fit(view.series.values, view.series.mask)
        self.train_view = view.with_scaler(self.scaler)
        # Shared, uncopied views: from_numpy keeps the memory of the series arrays.
        self._values = torch.from_numpy(series.values)
        self._mask = torch.from_numpy(series.mask)
        self.split_scalers = dict(split_scalers or {})
        self._stats = {
            name: (torch.as_tensor(sc.mean), torch.as_tensor(sc.std))
            for name, sc in {None: self.scaler, **self.split_scalers}.items()
        }
        tod, dow = calendar_features(series.timestamps)
        self._tod = torch.from_numpy(tod)
        self._dow = torch.from_numpy(dow)
        self._input_offsets = torch.arange(-window + 1, 1)
        self._target_offsets = torch.arange(1, horizon + 1)
        coords = torch.from_numpy(series.coords).float() if series.coords is not None else None
        self.context = ForecastContext(
            num_nodes=series.num_nodes,
            in_channels=series.num_channels,
            out_channels=num_targets,
            window=window,
            horizon=horizon,
            steps_per_day=series.steps_per_day,
            graph=graph,
            coords=coords,
        )

    @classmethod
    def build(cls, data: DataConfig, config: ForecastConfig) -> ForecastTask:
        """Load the data, split it by time, build the graph from training steps only."""
        from stgraph.data.sources import open_dataset
        from stgraph.graphs.recipes import build_graph

        raw = open_dataset(
            data.dataset,
            data_dir=data.data_dir,
            download=data.download,
            graph=data.graph_file,
            freq=data.freq,
            null_value=data.null_value,
        )
        series = raw.series
        split = deep_merge(raw.card.split, data.split)
        splits = split_samples(series.timestamps, config.window, config.horizon, **split)
        # A different graph method replaces the card's recipe; the same one only tunes it.
        card_method = raw.card.graph.get("method")
        same_method = data.graph.get("method", card_method) == card_method
        recipe = deep_merge(raw.card.graph, data.graph) if same_method else dict(data.graph)
        graph = build_graph(raw, recipe, SeriesTrainView.of(series, splits.train_steps))
        split_scalers = (
            per_split_scalers(series, splits, config.window)
            if config.normalization == "per_split"
            else None
        )
        return cls(
            series,
            graph,
            splits,
            config.window,
            config.horizon,
            loss=config.loss,
            split_scalers=split_scalers,
            null_value=raw.card.null_value,
            plot_nodes=config.plot_nodes,
        )

    # ------------------------------------------------------------------ batches
    def scaler_for(self, split: str | None = None) -> StandardScaler:
        """The scaler of ``split``: the training scaler unless ``split_scalers`` has one."""
        return self.split_scalers.get(split, self.scaler)

    def batch(self, anchors: torch.Tensor | np.ndarray, split: str | None = None) -> ForecastBatch:
        """Gather the windows ending at ``anchors`` (one fancy-index per tensor, no loop),
        scaled with ``split``'s scaler (`scaler_for`)."""
        anchors = torch.as_tensor(anchors, dtype=torch.long)
        inputs = anchors[:, None] + self._input_offsets
        targets = anchors[:, None] + self._target_offsets
        x_mask = self._mask[inputs]
        # In place on the gathered copy: one batch-sized tensor instead of three.
        x = self._values[inputs]
        mean, std = self._stats.get(split, self._stats[None])
        x.sub_(mean).div_(std).masked_fill_(~x_mask, 0.0)
        k = self.num_targets
        return Batch(
            ForecastInputs(
                x=x,
                x_mask=x_mask,
                x_tod=self._tod[inputs],
                x_dow=self._dow[inputs],
                y_tod=self._tod[targets],
                y_dow=self._dow[targets],
                anchor=anchors,
            ),
            ForecastTargets(y=self._values[targets][..., :k], y_mask=self._mask[targets][..., :k]),
        )

    def num_samples(self, split: str) -> int:
        return len(self.splits[split])

    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        limit: int | None = None,
    ) -> Iterator[ForecastBatch]:
        anchors = torch.from_numpy(self.splits[split])
        for group in anchor_batches(
            anchors, batch_size, shuffle, seed, epoch, rank, world_size, limit
        ):
            yield self.batch(group, split)

    # ------------------------------------------------------------------ loss and scoring
    def goal(self, metric: str) -> Goal:
        return "min"  # every forecast metric is an error

    def predict(
        self, output: torch.Tensor, batch: ForecastBatch | None = None, split: str | None = None
    ) -> torch.Tensor:
        """Model output (scaled) -> forecast in the data's units, with ``split``'s scaler."""
        return self.scaler_for(split).inverse(output, slice(0, self.num_targets))

    def loss(self, output: torch.Tensor, batch: ForecastBatch) -> Loss:
        """Masked loss sum in the data's units over the steps the model returned, weighted by
        the observed targets among them.

        A model may return fewer than ``horizon`` steps while training (one-step training with
        an autoregressive roll-out at evaluation); the loss then covers those steps only.
        """
        steps = output.shape[1]
        prediction = self.predict(output, batch, "train")
        target, mask = batch.targets.y[:, :steps], batch.targets.y_mask[:, :steps]
        if self.loss_name == "mae":
            elementwise = (prediction - target).abs()
        elif self.loss_name == "mse":
            elementwise = (prediction - target).square()
        else:
            elementwise = F.huber_loss(prediction, target, reduction="none", delta=1.0)
        total = (elementwise * mask).sum()
        return Loss(total, self.loss_weight(batch, output), {self.loss_name: total})

    def loss_weight(self, batch: ForecastBatch, output: torch.Tensor) -> torch.Tensor:
        return batch.targets.y_mask[:, : output.shape[1]].sum()

    def new_metrics(self) -> ForecastMetrics:
        return ForecastMetrics(self.horizon, self.report_steps)

    def update_metrics(
        self, metrics: ForecastMetrics, prediction: torch.Tensor, batch: ForecastBatch
    ) -> None:
        metrics.update(prediction, batch.targets.y, batch.targets.y_mask)

    def report(
        self,
        split: str,
        metrics: ForecastMetrics,
        predictions: list[torch.Tensor],
        model_name: str,
    ) -> Report:
        predictions = torch.cat(predictions)
        return forecast_report(self, split, metrics, predictions, model_name, self.plot_nodes)

    # ------------------------------------------------------------------ serving
    def export(self) -> dict[str, Any]:
        series = self.series
        return {
            "scaler": self.scaler.state_dict(),
            "node_ids": list(series.node_ids),
            "channels": list(series.channels),
            "num_targets": self.num_targets,
            "window": self.window,
            "horizon": self.horizon,
            "freq": str(pd.tseries.frequencies.to_offset(series.freq).freqstr),
            "null_value": self.null_value,
            "dataset": series.name,
        }
