"""Z-score scaling fitted on observed training entries only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class StandardScaler:
    """Per-channel mean and std (one scalar per channel over all nodes, the field's standard).

    Fit it on the training steps only: statistics from validation or test data would leak.
    """

    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]

    @classmethod
    def fit(cls, values: np.ndarray, mask: np.ndarray, chunk: int = 256) -> StandardScaler:
        """Statistics of ``values[mask]`` per channel (last axis).

        Two passes over chunks of ``chunk`` steps with float64 sums: exact enough, and the
        temporaries stay small next to the series (no float64 copy of a PEMS-BAY-sized array).
        """
        num_channels = values.shape[-1]
        total = np.zeros(num_channels)
        count = np.zeros(num_channels)
        for start in range(0, len(values), chunk):
            part, seen = values[start : start + chunk], mask[start : start + chunk]
            total += np.where(seen, part, 0).sum(axis=(0, 1), dtype=np.float64)
            count += seen.sum(axis=(0, 1))
        mean = np.divide(total, count, out=np.zeros(num_channels), where=count > 0)
        squares = np.zeros(num_channels)
        for start in range(0, len(values), chunk):
            part, seen = values[start : start + chunk], mask[start : start + chunk]
            squares += np.square(np.where(seen, part - mean, 0)).sum(axis=(0, 1), dtype=np.float64)
        std = np.sqrt(np.divide(squares, count, out=np.zeros(num_channels), where=count > 0))
        std[std == 0] = 1.0  # a constant (or empty) channel stays unscaled
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, x: torch.Tensor, channels: slice = slice(None)) -> torch.Tensor:
        return (x - self._t(self.mean[channels], x)) / self._t(self.std[channels], x)

    def inverse(self, x: torch.Tensor, channels: slice = slice(None)) -> torch.Tensor:
        return x * self._t(self.std[channels], x) + self._t(self.mean[channels], x)

    @staticmethod
    def _t(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(array, dtype=like.dtype, device=like.device)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> StandardScaler:
        return cls(np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32))


def per_split_scalers(
    series: Any, splits: Any, window: int, channel: int = -1
) -> dict[str, StandardScaler]:
    """GRAM-ODE's official normalisation, for parity runs only: one scalar mean and std per split.

    Officially each split's windows are z-scored with statistics of that split's own windowed
    *last* channel (``[..., -1]``: speed for 3-channel PEMS04/08), every channel with the same
    scalar, and outputs de-normalised with them: test inputs use test statistics, which leaks the
    test scale into evaluation. Here the statistics are those of the input windows (steps
    ``anchor - window + 1 .. anchor``, overlaps counted as the official windowing does) of each
    split, observed entries only.

    Returns:
        ``{"train": scaler, "val": scaler, "test": scaler}``, each with the same scalar in every
        channel, for `stgraph.tasks.forecast.ForecastTask`'s ``split_scalers``.
    """
    values = series.values[..., channel].astype(np.float64)
    mask = series.mask[..., channel]
    num_channels = series.num_channels
    offsets = np.arange(-window + 1, 1)
    scalers = {}
    for name in ("train", "val", "test"):
        rows = (splits[name][:, None] + offsets).ravel()
        counts = np.bincount(rows, minlength=series.num_steps)  # times each step is windowed
        weight = counts[:, None] * mask
        total = weight.sum()
        mean = (values * weight).sum() / max(total, 1)
        var = (np.square(values - mean) * weight).sum() / max(total, 1)
        std = float(np.sqrt(var)) or 1.0
        scalers[name] = StandardScaler(
            np.full(num_channels, mean, np.float32), np.full(num_channels, std, np.float32)
        )
    return scalers
