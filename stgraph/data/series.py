"""`Series`: the one in-memory form every adapter produces."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Series:
    """A multivariate series over a fixed set of graph nodes.

    Attributes:
        values: ``[T, N, F]`` float32. Unobserved entries hold 0 (read them through ``mask``).
        mask: ``[T, N, F]`` bool, True where the value was observed.
        timestamps: ``[T]`` strictly increasing, regularly spaced DatetimeIndex.
        node_ids: ``[N]`` node identifiers as strings (sensor ids, tickers, zone ids).
        channels: names of the ``F`` channels; the forecast target is ``channels[0]`` unless a task
            says otherwise.
        name: dataset name, used in run names and error messages.
        coords: optional ``[N, 2]`` float (latitude, longitude).
        attrs: free-form static metadata (units, source file, ...).
    """

    values: np.ndarray
    mask: np.ndarray
    timestamps: pd.DatetimeIndex
    node_ids: tuple[str, ...]
    channels: tuple[str, ...] = ("value",)
    name: str = "series"
    coords: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.ndim != 3:
            raise ValueError(f"{self.name}: values must be [T, N, F], got {self.values.shape}")
        if self.values.dtype != np.float32:
            raise ValueError(f"{self.name}: values must be float32, got {self.values.dtype}")
        if self.mask.shape != self.values.shape or self.mask.dtype != np.bool_:
            raise ValueError(f"{self.name}: mask must be bool with the shape of values")
        t, n, f = self.values.shape
        if len(self.timestamps) != t:
            raise ValueError(f"{self.name}: {len(self.timestamps)} timestamps for {t} steps")
        if len(self.node_ids) != n:
            raise ValueError(f"{self.name}: {len(self.node_ids)} node ids for {n} nodes")
        if len(self.channels) != f:
            raise ValueError(f"{self.name}: {len(self.channels)} channel names for {f} channels")
        if self.coords is not None and self.coords.shape != (n, 2):
            raise ValueError(f"{self.name}: coords must be [N, 2], got {self.coords.shape}")

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.values.shape[1]

    @property
    def num_channels(self) -> int:
        return self.values.shape[2]

    @property
    def freq(self) -> pd.Timedelta:
        """The sampling interval (timestamps are regular by construction)."""
        return self.timestamps[1] - self.timestamps[0]

    @property
    def steps_per_day(self) -> int:
        return int(pd.Timedelta(days=1) / self.freq)

    def slice_steps(self, start: int, stop: int) -> Series:
        """A view of steps ``[start, stop)`` (no copy of the arrays)."""
        return replace(
            self,
            values=self.values[start:stop],
            mask=self.mask[start:stop],
            timestamps=self.timestamps[start:stop],
        )
