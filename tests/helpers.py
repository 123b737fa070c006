"""Small builders shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_series(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    freq: str = "5min",
    start: str = "2024-01-01",
    name: str = "toy",
):
    """A `Series` from ``[T, N]`` or ``[T, N, F]`` values (mask: nonzero entries)."""
    from stgraph.data.series import Series

    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[..., None]
    if mask is None:
        mask = values != 0
    mask = np.asarray(mask, dtype=bool).reshape(values.shape)
    stamps = pd.date_range(start, periods=values.shape[0], freq=freq)
    nodes = tuple(f"n{i}" for i in range(values.shape[1]))
    channels = tuple(f"c{i}" for i in range(values.shape[2]))
    return Series(values, mask, stamps, nodes, channels, name)


def price_series(days: int = 120, stocks: int = 6, seed: int = 0, name: str = "toy"):
    """A trading-calendar panel of random-walk prices (channels close, open, high, low, volume),
    on weekdays from 2020-01-01, every stock trading every day."""
    from stgraph.data.series import Series

    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, stocks)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(close, open_) * 1.01
    low = np.minimum(close, open_) * 0.99
    volume = rng.integers(1_000, 5_000, close.shape).astype(float)
    values = np.stack([close, open_, high, low, volume], axis=2).astype(np.float32)
    return Series(
        values=values,
        mask=np.ones(values.shape, dtype=bool),
        timestamps=pd.bdate_range("2020-01-01", periods=days),
        node_ids=tuple(f"S{i}" for i in range(stocks)),
        channels=("close", "open", "high", "low", "volume"),
        name=name,
        attrs={"calendar": "trading"},
    )


def long_table(series) -> pd.DataFrame:
    """``series`` as a long ``date,ticker,open,high,low,close,volume`` table (observed cells)."""
    rows = []
    for i, ticker in enumerate(series.node_ids):
        frame = pd.DataFrame(series.values[:, i], columns=list(series.channels))
        frame.insert(0, "ticker", ticker)
        frame.insert(0, "date", series.timestamps.strftime("%Y-%m-%d"))
        rows.append(frame[series.mask[:, i, 0]])
    return pd.concat(rows, ignore_index=True)
