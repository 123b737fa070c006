"""Honest non-neural baselines: persistence and the historical average."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stgraph.data.views import SeriesTrainView
from stgraph.data.windows import calendar_features
from stgraph.models.base import MODELS, ForecastModel, ModelConfig
from stgraph.nn.encodings import day_slot
from stgraph.tasks.forecast import ForecastContext


@MODELS.register("persistence")
class Persistence(ForecastModel):
    """Repeats each node's last observed value over the whole horizon.

    Where a node has no observed value in the input window it predicts the training mean.
    """

    trainable = False

    def forward(self, inputs) -> torch.Tensor:
        out = self.context.out_channels
        x, observed = inputs.x[..., :out], inputs.x_mask[..., :out]
        steps = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        last = torch.where(observed, steps, -1).amax(dim=1, keepdim=True)  # [B, 1, N, F]
        value = x.gather(1, last.clamp_min(0))
        value = torch.where(last >= 0, value, torch.zeros_like(value))
        return value.expand(-1, self.context.horizon, -1, -1)


def weekday_slot_totals(
    train: SeriesTrainView, channels: int, steps_per_day: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and counts of the observed training values of the first ``channels`` channels in
    the task's scaling, per day of week and time-of-day slot: two float64 ``[7, slots, N, F]``.
    Coarser tables (kind of day, all days) are sums over its rows."""
    series = train.series
    values = torch.from_numpy(series.values[:, :, :channels]).double()
    mask = torch.from_numpy(series.mask[:, :, :channels])
    tod, dow = calendar_features(series.timestamps)
    cell = torch.from_numpy(dow) * steps_per_day + day_slot(torch.from_numpy(tod), steps_per_day)
    scaled = torch.where(mask, train.scaler.transform(values, slice(0, channels)), 0.0)
    shape = (7 * steps_per_day, *values.shape[1:])
    sums = torch.zeros(shape, dtype=torch.float64).index_add_(0, cell, scaled)
    counts = torch.zeros(shape, dtype=torch.float64).index_add_(0, cell, mask.double())
    return sums.view(7, steps_per_day, *shape[1:]), counts.view(7, steps_per_day, *shape[1:])


def by_day_type(table: torch.Tensor) -> torch.Tensor:
    """``[7, ...] -> [2, ...]``: rows summed over Monday-Friday and over the weekend."""
    return torch.stack([table[:5].sum(0), table[5:].sum(0)])


def day_type(dow: torch.Tensor) -> torch.Tensor:
    """0 for Monday to Friday, 1 for Saturday and Sunday (``dow`` 0 = Monday)."""
    return (dow >= 5).long()


@dataclass
class HistoricalAverageConfig(ModelConfig):
    pass


@MODELS.register("historical-average")
class HistoricalAverage(ForecastModel):
    """Mean of the training split by time of day and day of week, per node.

    A (weekday, time-of-day) slot never observed in training falls back to the time-of-day mean
    over the training days of the same kind (Monday-Friday or weekend), then over all days, then
    to the node's overall training mean. With a week or less of training data most weekdays
    occur once or never, and the kind of day carries most of what the weekday would.
    """

    config_class = HistoricalAverageConfig
    trainable = False

    def __init__(self, config: ModelConfig, context: ForecastContext) -> None:
        super().__init__(config, context)
        slots, nodes, out = context.steps_per_day, context.num_nodes, context.out_channels
        self.register_buffer("table", torch.zeros(7, slots, nodes, out))

    def fit_train(self, train: SeriesTrainView) -> None:
        context = self.context
        sums, counts = weekday_slot_totals(train, context.out_channels, context.steps_per_day)
        # Coarsest first, each finer level replacing it where it has observations.
        mean = sums.sum((0, 1)) / counts.sum((0, 1)).clamp_min(1)  # [N, F], the overall mean
        levels = [
            (sums.sum(0), counts.sum(0), slice(None)),  # all days, per slot
            (by_day_type(sums), by_day_type(counts), day_type(torch.arange(7))),  # kind of day
            (sums, counts, slice(None)),  # weekday
        ]
        for level_sums, level_counts, rows in levels:
            level = level_sums / level_counts.clamp_min(1)
            mean = torch.where(level_counts > 0, level, mean)[rows]
        self.table.copy_(mean.float())

    def forward(self, inputs) -> torch.Tensor:
        slot = day_slot(inputs.y_tod, self.context.steps_per_day)
        return self.table[inputs.y_dow, slot]  # [B, H, N, F]
