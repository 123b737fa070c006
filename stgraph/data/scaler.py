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
    def fit(cls, values: np.ndarray, mask: np.ndarray) -> StandardScaler:
        """Statistics of ``values[mask]`` per channel (last axis), in float64 for accuracy."""
        num_channels = values.shape[-1]
        flat_values = values.reshape(-1, num_channels)
        flat_mask = mask.reshape(-1, num_channels)
        mean = np.zeros(num_channels)
        std = np.ones(num_channels)
        for channel in range(num_channels):
            observed = flat_values[flat_mask[:, channel], channel].astype(np.float64)
            if observed.size:
                mean[channel] = observed.mean()
                std[channel] = observed.std() or 1.0  # a constant channel stays unscaled
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
