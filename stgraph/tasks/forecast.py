"""The forecast task: what a sample is, how batches are built, the loss and the metrics.

Models never see scalers or losses: they take scaled inputs and return scaled outputs; this task
inverse-scales predictions and scores them in the data's own units against the observed targets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from stgraph.data.scaler import StandardScaler
from stgraph.data.series import Series
from stgraph.data.windows import Splits, calendar_features
from stgraph.graphs.graph import Graph
from stgraph.metrics import ForecastMetrics

LOSSES = ("mae", "mse", "huber")


@dataclass
class ForecastBatch:
    """One batch of windows. ``B`` windows, ``W`` input steps, ``H`` horizon, ``N`` nodes.

    Attributes:
        x: ``[B, W, N, F]`` scaled inputs; unobserved entries are 0 (the training mean).
        x_mask: ``[B, W, N, F]`` True where the input was observed.
        x_tod, x_dow: ``[B, W]`` time of day in [0, 1) and day of week (0 = Monday) of the inputs.
        y_tod, y_dow: ``[B, H]`` the same for the target steps (known in advance).
        y: ``[B, H, N, F_out]`` targets in the data's units (0 where unobserved).
        y_mask: ``[B, H, N, F_out]`` True where the target was observed.
        anchor: ``[B]`` index of each window's last input step in the series.
    """

    x: torch.Tensor
    x_mask: torch.Tensor
    x_tod: torch.Tensor
    x_dow: torch.Tensor
    y_tod: torch.Tensor
    y_dow: torch.Tensor
    y: torch.Tensor
    y_mask: torch.Tensor
    anchor: torch.Tensor

    def to(self, device: torch.device | str) -> ForecastBatch:
        return ForecastBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def split(self, size: int) -> list[ForecastBatch]:
        """Consecutive micro-batches of at most ``size`` windows (views, no copies)."""
        parts = {f.name: getattr(self, f.name).split(size) for f in fields(self)}
        return [
            ForecastBatch(**{k: v[i] for k, v in parts.items()}) for i in range(len(parts["x"]))
        ]


class ForecastTask:
    """Windows over a `Series`, scaled with train-only statistics, scored with masked metrics.

    Args:
        series: the data; ``channels[:num_targets]`` are forecast.
        graph: the static graph the models may use.
        splits: anchors of the train/val/test samples.
        window, horizon: input and output lengths.
        num_targets: how many leading channels are targets (default 1: the card's target).
        loss: ``mae`` (masked, the field's default), ``mse`` or ``huber``.
    """

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
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.series = series
        self.graph = graph
        self.splits = splits
        self.window = window
        self.horizon = horizon
        self.num_targets = num_targets
        self.loss_name = loss
        self.report_steps = report_steps
        train_steps = splits.train_steps
        self.scaler = scaler or StandardScaler.fit(
            series.values[:train_steps], series.mask[:train_steps]
        )
        # Shared, uncopied views: from_numpy keeps the memory of the series arrays.
        self._values = torch.from_numpy(series.values)
        self._mask = torch.from_numpy(series.mask)
        # Parity runs only (GRAM-ODE's official code): each split scaled with its own statistics.
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
        return ForecastBatch(
            x=x,
            x_mask=x_mask,
            x_tod=self._tod[inputs],
            x_dow=self._dow[inputs],
            y_tod=self._tod[targets],
            y_dow=self._dow[targets],
            y=self._values[targets][..., :k],
            y_mask=self._mask[targets][..., :k],
            anchor=anchors,
        )

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
        """Batches of a split. Shuffling depends only on ``(seed, epoch)``, so a resumed run sees
        the same order; with ``world_size > 1`` each rank takes every ``world_size``-th window."""
        anchors = torch.from_numpy(self.splits[split])
        if shuffle:
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            anchors = anchors[torch.randperm(len(anchors), generator=generator)]
        if world_size > 1:
            # Equal shares, or a rank with one batch more would wait forever in DDP's all-reduce.
            anchors = anchors[: len(anchors) - len(anchors) % world_size][rank::world_size]
        for number, start in enumerate(range(0, len(anchors), batch_size)):
            if limit is not None and number >= limit:
                return
            yield self.batch(anchors[start : start + batch_size], split)

    def num_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        per_rank = (
            len(self.splits[split]) // world_size if world_size > 1 else len(self.splits[split])
        )
        return -(-per_rank // batch_size)

    # ------------------------------------------------------------------ scoring
    def predict(self, output: torch.Tensor, split: str | None = None) -> torch.Tensor:
        """Model output (scaled) -> forecast in the data's units, with ``split``'s scaler."""
        return self.scaler_for(split).inverse(output, slice(0, self.num_targets))

    def loss(
        self, output: torch.Tensor, batch: ForecastBatch, normalizer: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Masked loss in the data's units over the steps the model returned.

        A model may return fewer than ``horizon`` steps while training (one-step training with
        an autoregressive roll-out at evaluation); the loss then covers those steps only.
        ``normalizer`` replaces the batch's observed count: micro-batches of one batch divide by
        the whole batch's count, so their gradients add up to the full batch's exactly.
        """
        steps = output.shape[1]
        prediction = self.predict(output, "train")
        target, mask = batch.y[:, :steps], batch.y_mask[:, :steps]
        if self.loss_name == "mae":
            elementwise = (prediction - target).abs()
        elif self.loss_name == "mse":
            elementwise = (prediction - target).square()
        else:
            elementwise = F.huber_loss(prediction, target, reduction="none", delta=1.0)
        observed = mask.sum() if normalizer is None else normalizer
        return (elementwise * mask).sum() / observed.clamp_min(1)

    def new_metrics(self) -> ForecastMetrics:
        return ForecastMetrics(self.horizon, self.report_steps)
