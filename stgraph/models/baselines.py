"""Honest non-neural baselines: persistence and the historical average."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stgraph.data.windows import calendar_features
from stgraph.models.base import MODELS, ForecastModel, ModelConfig, ModelContext
from stgraph.nn.encodings import day_slot


@MODELS.register("persistence")
class Persistence(ForecastModel):
    """Repeats each node's last observed value over the whole horizon.

    Where a node has no observed value in the input window it predicts the training mean.
    """

    trainable = False

    def forward(self, batch) -> torch.Tensor:
        out = self.context.out_channels
        x, observed = batch.x[..., :out], batch.x_mask[..., :out]
        steps = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        last = torch.where(observed, steps, -1).amax(dim=1, keepdim=True)  # [B, 1, N, F]
        value = x.gather(1, last.clamp_min(0))
        value = torch.where(last >= 0, value, torch.zeros_like(value))
        return value.expand(-1, self.context.horizon, -1, -1)


@dataclass
class HistoricalAverageConfig(ModelConfig):
    pass


@MODELS.register("historical-average")
class HistoricalAverage(ForecastModel):
    """Mean of the training split by time of day and day of week, per node.

    A (weekday, time-of-day) slot never observed in training falls back to the time-of-day mean
    over all weekdays, then to the node's overall training mean.
    """

    config_class = HistoricalAverageConfig
    trainable = False

    def __init__(self, config: ModelConfig, context: ModelContext) -> None:
        super().__init__(config, context)
        slots, nodes, out = context.steps_per_day, context.num_nodes, context.out_channels
        self.register_buffer("table", torch.zeros(7, slots, nodes, out))

    def fit_train(self, task) -> None:
        out = self.context.out_channels
        steps = task.splits.train_steps
        series = task.series
        values = series.values[:steps, :, :out].astype(np.float64)
        mask = series.mask[:steps, :, :out]
        tod, dow = calendar_features(series.timestamps[:steps])
        slot = day_slot(torch.from_numpy(tod), self.context.steps_per_day).numpy()

        def table(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
            sums = np.zeros((size, *values.shape[1:]))
            counts = np.zeros_like(sums)
            np.add.at(sums, key, np.where(mask, values, 0.0))
            np.add.at(counts, key, mask)
            return sums, counts

        slots = self.context.steps_per_day
        week_sum, week_count = table(dow * slots + slot, 7 * slots)
        day_sum, day_count = table(slot, slots)
        overall = np.where(mask, values, 0).sum(0) / np.maximum(mask.sum(0), 1)
        day_mean = np.where(day_count > 0, day_sum / np.maximum(day_count, 1), overall)
        week_mean = np.where(
            week_count > 0,
            week_sum / np.maximum(week_count, 1),
            np.tile(day_mean, (7, 1, 1)),
        ).reshape(7, slots, *values.shape[1:])
        scaled = task.scaler.transform(torch.from_numpy(week_mean).float(), slice(0, out))
        self.table.copy_(scaled)

    def forward(self, batch) -> torch.Tensor:
        slot = day_slot(batch.y_tod, self.context.steps_per_day)
        return self.table[batch.y_dow, slot]  # [B, H, N, F]
