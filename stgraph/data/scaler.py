"""Z-score scaling fitted on observed training entries only."""

from __future__ import annotations

from dataclasses import dataclass

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
