"""A stock panel prepared for the cross-section task: prices as ``[T, N]`` arrays, daily returns,
the universe, the date splits, per-day factors and calendar codes.

Everything a sample needs is computed from the days up to its prediction date; fitted things
(the universe filter, the stock graph) see the training days only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from stgraph.data.factors import (
    ALPHA158_WINDOWS,
    ALPHA360_LAGS,
    alpha158_subset,
    alpha360,
    cross_sectional_zscore,
)
from stgraph.data.series import Series, trading_day_features
from stgraph.data.windows import SPLITS, Splits
from stgraph.errors import InputError

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
SYNTHETIC_MONTH = 21  # the official code's trading days per "month"


def factor_lookback(kind: str) -> int:
    """Days before a window's first day that its factors read: Alpha360's 60 lags reach 59 days
    back, the Alpha158 subset's 60-day rolling windows 60 (with the day before for a return)."""
    return {"alpha360": ALPHA360_LAGS - 1, "alpha158": max(ALPHA158_WINDOWS)}.get(kind, 0)


def daily_returns(close: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``close[d] / close[d-1] - 1`` ``[T, N]`` float32 (0 where undefined) and where it is
    defined: both days traded (day 0 has no return)."""
    ok = np.zeros(close.shape, dtype=bool)
    ok[1:] = observed[1:] & observed[:-1]
    previous = np.where(ok[1:], close[:-1], 1.0)
    r = np.zeros(close.shape, dtype=np.float64)
    r[1:] = np.where(ok[1:], close[1:] / previous - 1.0, 0.0)
    return r.astype(np.float32), ok


def split_days(
    timestamps: pd.DatetimeIndex,
    window: int,
    horizon: int,
    method: str = "ratio",
    ratios: tuple[float, ...] | list[float] = (0.7, 0.1, 0.2),
    val_start: str | None = None,
    test_start: str | None = None,
    test_end: str | None = None,
    train_start: str | None = None,
    inside: bool = False,
    lookback: int = 0,
    source: str = "the data",
) -> Splits:
    """Prediction dates of each split, by the split of their days.

    A date ``t`` belongs to a split when ``t`` and its last target day ``t + horizon`` fall in it,
    so no training target lies in the validation or test period. Its inputs (``t - window`` ..
    ``t``; the first return needs the close before the window) may reach back into an earlier
    split, as Qlib's handlers do, unless ``inside`` (the official Stockformer code: whole windows
    inside their split).

    Args:
        method: ``ratio`` (the days cut by ``ratios``) or ``date`` (``val_start``, ``test_start``
            and optionally ``test_end``, inclusive, and ``train_start``, as dates: a rolling
            fold; earlier days still serve as inputs and as data for the fitted graph).
        lookback: days before the window that the inputs read (`factor_lookback`): a date is a
            sample only when they all exist, as a served model requires.

    Raises:
        InputError: a bad method or ratios, or a split without a prediction date.
    """
    days = len(timestamps)
    dates = {"val_start": val_start, "test_start": test_start, "test_end": test_end}
    dates["train_start"] = train_start
    if method == "ratio" and any(v is not None for v in dates.values()):
        given = ", ".join(k for k, v in dates.items() if v is not None)
        raise InputError(f"split.{given} apply to split method 'date', not 'ratio'.")
    if method == "ratio":
        if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
            raise InputError(f"split ratios must be three numbers summing to 1, got {ratios}.")
        bounds = [round(ratios[0] * days), round((ratios[0] + ratios[1]) * days)]
        start, end = 0, days
    elif method == "date":
        if val_start is None or test_start is None:
            raise InputError("split method 'date' needs split.val_start and split.test_start.")
        bounds = list(timestamps.searchsorted(pd.DatetimeIndex([val_start, test_start])))
        start = 0 if train_start is None else int(timestamps.searchsorted(train_start))
        end = days if test_end is None else int(timestamps.searchsorted(test_end, "right"))
    else:
        raise InputError(f"Unknown split method '{method}'. Known: ratio, date.")
    edges = [start, int(bounds[0]), int(bounds[1]), end]
    t = np.arange(window + lookback, days - horizon, dtype=np.int64)
    first = t - window if inside else t
    parts = []
    for name, lo, hi in zip(SPLITS, edges[:-1], edges[1:]):
        part = t[(first >= lo) & (t >= lo) & (t + horizon < hi)]
        if len(part) == 0:
            span = (
                f"{timestamps[lo].date()} .. {timestamps[hi - 1].date()}"
                if lo < min(hi, days)
                else "no trading day"
            )
            raise InputError(
                f"{source}: the {name} period ({span}) has no prediction date with "
                f"{window + lookback} days before it and {horizon} after it inside the data "
                f"(data.split: {method}); move the split dates or shorten task.params.window."
            )
        parts.append(part)
    return Splits(*parts)


@dataclass
class StockPanel:
    """The universe's prices as ``[T, N]`` arrays (float64, 0 where unobserved).

    Attributes:
        series: the panel's series (after the universe filter).
        prices: field -> ``[T, N]`` array for ``open, high, low, close, volume``.
        observed: ``[T, N]`` True where the stock traded (its close is known).
        returns, return_ok: `daily_returns`.
    """

    series: Series
    prices: dict[str, np.ndarray]
    observed: np.ndarray
    returns: np.ndarray
    return_ok: np.ndarray
    cache_bytes: int = 512 << 20
    _cache_key: tuple | None = field(default=None, repr=False)
    _cache: torch.Tensor | None = field(default=None, repr=False)
    _cached: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, series: Series) -> StockPanel:
        missing = [f for f in PRICE_FIELDS if f not in series.channels]
        if missing:
            raise InputError(
                f"{series.name}: the cross-section task needs the price channels "
                f"{', '.join(PRICE_FIELDS)}; missing {', '.join(missing)}."
            )
        prices = {f: series.values[:, :, series.channels.index(f)] for f in PRICE_FIELDS}
        observed = series.mask[:, :, series.channels.index("close")]
        returns, ok = daily_returns(prices["close"].astype(np.float64), observed)
        return cls(series, prices, observed, returns, ok)

    @property
    def num_days(self) -> int:
        return self.observed.shape[0]

    @property
    def tickers(self) -> tuple[str, ...]:
        return self.series.node_ids

    def universe(self, train_days: int, min_coverage: float) -> np.ndarray:
        """Indices of the stocks that traded on at least ``min_coverage`` of the first
        ``train_days`` days (training days only: a later listing's test history does not decide)."""
        coverage = self.observed[:train_days].mean(axis=0)
        return np.flatnonzero(coverage >= min_coverage - 1e-12)

    def select(self, stocks: np.ndarray) -> StockPanel:
        series = self.series
        keep = [series.node_ids[i] for i in stocks]
        sectors = series.attrs.get("sectors")
        attrs = dict(series.attrs)
        if sectors:
            attrs["sectors"] = {t: sectors[t] for t in keep if t in sectors}
        sub = Series(
            values=series.values[:, stocks],
            mask=series.mask[:, stocks],
            timestamps=series.timestamps,
            node_ids=tuple(keep),
            channels=series.channels,
            name=series.name,
            attrs=attrs,
        )
        return StockPanel.of(sub)

    # ------------------------------------------------------------------ per-day features
    def factors(self, days: np.ndarray, kind: str, zscore: str) -> torch.Tensor:
        """``[D, N, F]`` float32 factors of ``days``, each day z-scored over its own stocks
        (0 where unobserved).

        Each day's factors depend on that day and earlier ones only, and every day sits in
        ``window`` samples, so a day computed once is kept while the whole panel's factors fit
        in ``cache_bytes`` (StockNet's 84 stocks x 1,258 days of Alpha360: 152 MB); a larger
        panel computes them per batch, keeping memory near the raw prices plus a batch.
        """
        days = np.asarray(days, dtype=np.int64)
        key = (kind, zscore)
        if self._cache_key != key:
            self._cache_key, self._cache, self._cached = key, None, None
            size = self.num_days * self.observed.shape[1] * self.num_factors(kind) * 4
            if 0 < size <= self.cache_bytes:
                self._cache = torch.empty(
                    self.num_days, self.observed.shape[1], self.num_factors(kind)
                )
                self._cached = np.zeros(self.num_days, dtype=bool)
        if self._cache is None:
            return self._compute(days, kind, zscore)
        missing = days[~self._cached[days]]
        if len(missing):
            self._cache[missing] = self._compute(missing, kind, zscore)
            self._cached[missing] = True
        return self._cache[days]

    def _compute(self, days: np.ndarray, kind: str, zscore: str) -> torch.Tensor:
        if kind == "returns":
            return torch.zeros(len(days), self.observed.shape[1], 0)
        if kind == "alpha158":
            values, mask = self._alpha158
            values, mask = values[days], mask[days]
        else:
            p = self.prices
            values, mask = alpha360(
                days, p["open"], p["high"], p["low"], p["close"], p["volume"], self.observed
            )
        if zscore == "none":
            return values.masked_fill(~mask, 0.0)
        return cross_sectional_zscore(values, mask, robust=zscore == "robust", dtype=torch.float32)

    @cached_property
    def _alpha158(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Each day's factors use that day and earlier ones only, so one pass serves every split.
        p = self.prices
        values, mask, _ = alpha158_subset(
            p["open"], p["high"], p["low"], p["close"], p["volume"], self.observed
        )
        return torch.as_tensor(values), torch.as_tensor(mask)

    def num_factors(self, kind: str) -> int:
        return {"alpha360": 360, "returns": 0}.get(kind) or int(self._alpha158[0].shape[2])

    def calendar(self, synthetic: bool) -> torch.Tensor:
        """``[T, 2]`` int64 codes of every day: day of week and month of the real dates, or the
        official code's synthetic ``(month index mod 5, day in month mod 50)`` of 21-day months."""
        if not synthetic:
            return torch.from_numpy(trading_day_features(self.series.timestamps))
        return synthetic_calendar(np.arange(self.num_days))


def synthetic_calendar(index: np.ndarray) -> torch.Tensor:
    """``[len(index), 2]`` the official Stockformer code's codes of the days at ``index``: a
    "month" of 21 trading days, counted from 2, mod 5, and the day in it mod 50."""
    month = (index // SYNTHETIC_MONTH + 2) % 5
    return torch.from_numpy(np.stack([month, (index % SYNTHETIC_MONTH) % 50], axis=1))
