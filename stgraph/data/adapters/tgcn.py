"""The T-GCN CSV format (LOS-LOOP, SZ-taxi): a speed table and a headerless adjacency matrix.

``options: {values: los_speed.csv, adjacency: los_adj.csv}``. The values file has a header row of
node ids and one row per step, without timestamps; they come from the card's ``start`` and
``frequency``. The adjacency file is ``N x N`` numbers without a header, in the column order of
the values file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.base import ADAPTERS, RawDataset
from stgraph.data.adapters.tabular import build_series, numeric_values, read_table
from stgraph.data.cards import DatasetCard
from stgraph.errors import InputError


@ADAPTERS.register("tgcn-csv")
def load_tgcn(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Load a T-GCN style dataset described by ``card`` from ``data_dir``."""
    where = card.path or card.name
    values_name = card.options.get("values")
    adjacency_name = card.options.get("adjacency")
    if not values_name or not adjacency_name:
        raise InputError(
            f"Card {where}: a tgcn-csv card needs options.values and options.adjacency "
            "(file names in the data directory)."
        )
    if not card.start:
        raise InputError(
            f"Card {where}: T-GCN files carry no timestamps, so the card needs 'start' "
            "(e.g. '2012-03-01 00:00')."
        )
    values_path = Path(data_dir) / values_name
    adjacency_path = Path(data_dir) / adjacency_name

    frame = read_table(values_path)
    raw = numeric_values(frame, values_path)
    node_ids = [str(c).strip() for c in frame.columns]
    try:
        index = pd.date_range(card.start, periods=len(frame), freq=card.frequency)
    except ValueError as exc:
        raise InputError(f"Card {where}: bad start/frequency ({exc}).") from None
    series = build_series(raw, index, node_ids, card, values_path)

    adjacency = numeric_values(
        read_table(adjacency_path, "adjacency file", header=None), adjacency_path, 1
    ).astype(np.float32)
    n = len(node_ids)
    if adjacency.shape != (n, n):
        raise InputError(
            f"Adjacency file {adjacency_path} is {adjacency.shape[0]}x{adjacency.shape[1]}, but "
            f"{values_path} has {n} node columns; it must be {n}x{n}."
        )
    if not np.isfinite(adjacency).all():
        raise InputError(f"Adjacency file {adjacency_path} holds NaN or inf values.")
    return RawDataset(series=series, card=card, adjacency=adjacency)
