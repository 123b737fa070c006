"""`Series`: the one in-memory form every adapter produces."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from stgraph.errors import InputError

CALENDARS = ("regular", "trading")
TRADING_DAY_FEATURES = ("day_of_week", "month")


@dataclass(frozen=True)
class Series:
    """A multivariate series over a fixed set of graph nodes.

    Attributes:
        values: ``[T, N, F]`` float32. Unobserved entries hold 0 (read them through ``mask``).
        mask: ``[T, N, F]`` bool, True where the value was observed.
        timestamps: ``[T]`` strictly increasing DatetimeIndex: regularly spaced, except under a
            trading calendar (``attrs["calendar"] == "trading"``), where it holds the trading days
            themselves (midnight dates) with no rows for weekends and holidays.
        node_ids: ``[N]`` node identifiers as strings (sensor ids, tickers, zone ids).
        channels: names of the ``F`` channels; the forecast target is ``channels[0]`` unless a task
            says otherwise.
        name: dataset name, used in run names and error messages.
        coords: optional ``[N, 2]`` float (latitude, longitude).
        attrs: free-form static metadata (units, source file, ``calendar``, ...).
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
        if self.calendar not in CALENDARS:
            raise ValueError(f"{self.name}: attrs['calendar'] must be one of {CALENDARS}")
        if self.calendar == "trading" and not self.timestamps.is_monotonic_increasing:
            raise ValueError(f"{self.name}: trading days must be increasing")

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
    def calendar(self) -> str:
        """``regular`` (a fixed sampling interval) or ``trading`` (one row per trading day)."""
        return str(self.attrs.get("calendar", "regular"))

    @property
    def freq(self) -> pd.Timedelta:
        """The sampling interval (timestamps are regular by construction).

        Raises:
            InputError: under a trading calendar, whose steps are 1 to several days apart.
        """
        self._require_regular("freq")
        return self.timestamps[1] - self.timestamps[0]

    @property
    def steps_per_day(self) -> int:
        """Steps per day of a regular series; `InputError` under a trading calendar."""
        self._require_regular("steps_per_day")
        return int(pd.Timedelta(days=1) / self.freq)

    def _require_regular(self, what: str) -> None:
        if self.calendar == "trading":
            raise InputError(
                f"{self.name}: {what} is undefined for a trading-calendar series (one row per "
                "trading day, weekends and holidays absent). Tasks with regular grids (forecast) "
                "do not accept it: daily prices are read by the cross-section task "
                "(`--task cross-section`)."
            )

    def slice_steps(self, start: int, stop: int) -> Series:
        """A view of steps ``[start, stop)`` (no copy of the arrays)."""
        return replace(
            self,
            values=self.values[start:stop],
            mask=self.mask[start:stop],
            timestamps=self.timestamps[start:stop],
        )


def trading_day_features(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """``[T, 2]`` int64 features from the real dates, in `TRADING_DAY_FEATURES` order.

    ``day_of_week`` is 0 (Monday) .. 6 (Sunday) and ``month`` is 0 (January) .. 11, both zero-based
    so that they index embedding tables directly. Unlike a synthetic "21 trading days make a month"
    counter, these follow the calendar (a holiday week still starts on its real weekday).
    """
    index = pd.DatetimeIndex(timestamps)
    return np.stack([index.dayofweek, index.month - 1], axis=1).astype(np.int64)
