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
