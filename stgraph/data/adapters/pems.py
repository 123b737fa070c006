"""The PeMS flow releases (PEMS03/04/07/08, ASTGCN/STSGCN format) and PeMSD7(M) (STGCN format).

``pems-npz`` options:
    values: ``PEMS0X.npz`` with key ``data`` of shape ``[T, N, C]`` (C = 3: flow, occupancy,
        speed for PEMS04/08; C = 1, flow, for PEMS03/07). Timestamps come from the card's
        ``start`` and ``frequency`` (the file holds none).
    channel: the target channel (0 = flow). ``channels`` (a list, target first) instead keeps
        several channels as inputs, e.g. ``[0, 1, 2]`` for the 3-channel runs.
    edges: the ``from,to,cost`` edge list (``PEMS0X.csv``); the header names vary.
    ids: optional ``PEMS03.txt``: row ``i`` is the sensor id of node ``i``. PEMS03's edge list
        names sensors by id; the other edge lists name nodes by row index.

    The edge list becomes ``distances`` (symmetric, the shorter cost where both directions or a
    repeated row disagree, 0 on the diagonal, ``inf`` where no road links two nodes) and a binary
    symmetric ``adjacency`` without self-loops: the "connectivity" matrix STGODE and ASTGNN
    build from these files. Weighted graphs are built from ``distances`` by the graph recipes
    (``stgode-spatial``, ``gaussian-kernel``). Exact repeated rows (PEMS08 lists 18 pairs twice)
    collapse to one edge.

``pemsd7m`` options:
    values: ``V_228.csv``, speeds ``[T, N]`` without header or timestamps, 288 steps per day over
        weekdays only.
    distances: ``W_228.csv``, ``N x N`` road distances in metres without header.
    locations: optional station table (``ID,...,Latitude,Longitude``) for node ids and coords.

    Timestamps are the real ones: 288 five-minute steps on each weekday (Monday to Friday,
    holidays included) from the card's ``start``. Consecutive rows are therefore not always 5
    minutes apart (Friday 23:55 is followed by Monday 00:00), so the card must set
    ``split.within_day: true``: windows then never straddle a night or a weekend.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.base import ADAPTERS, RawDataset, observed_mask
from stgraph.data.adapters.tabular import check_file, numeric_values, read_table
from stgraph.data.cards import DatasetCard
from stgraph.data.edges import edge_distance_matrix, parse_edge_list
from stgraph.data.series import Series
from stgraph.errors import InputError

PEMS_CHANNELS = ("flow", "occupancy", "speed")
STEPS_PER_DAY = 288


def _option(card: DatasetCard, key: str) -> str:
    value = card.options.get(key)
    if not value:
        raise InputError(
            f"Card {card.path or card.name}: format '{card.format}' needs options.{key}."
        )
    return str(value)


def read_npz(path: Path, key: str = "data") -> np.ndarray:
    """The ``[T, N, C]`` array under ``key`` of an ``.npz`` file, with clear errors."""
    check_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise InputError(
                    f"{path} has no array '{key}' (arrays: {archive.files or 'none'}). Set the "
                    "card's options.key."
                )
            data = archive[key]
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(
            f"{path} is not a readable .npz file (truncated or corrupt?): {exc}. Download it again."
        ) from None
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(f"{path}: array '{key}' must be [T, N, C], got shape {data.shape}.")
    return data


def read_edge_distances(path: Path, node_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, adjacency)`` from a ``from,to,cost`` edge list; see the module docstring."""
    frame = read_table(path, "edge list")
    if frame.shape[1] != 3:
        raise InputError(
            f"Edge list {path}: expected 3 columns (from, to, cost), got {frame.shape[1]}."
        )
    edges = parse_edge_list(
        frame, node_ids, duplicates="min", symmetric=True, what=f"Edge list {path}"
    )
    distances = edge_distance_matrix(*edges, len(node_ids))
    np.fill_diagonal(distances, 0.0)
    if (distances < 0).any():
        raise InputError(f"Edge list {path}: negative costs; a road distance must be >= 0.")
    adjacency = np.isfinite(distances).astype(np.float32)
    np.fill_diagonal(adjacency, 0.0)
    return distances, adjacency


def _timestamps(card: DatasetCard, periods: int) -> pd.DatetimeIndex:
    if not card.start:
        raise InputError(
            f"Card {card.path or card.name}: the files carry no timestamps, so the card needs "
            "'start' (e.g. '2018-01-01 00:00')."
        )
    try:
        return pd.date_range(card.start, periods=periods, freq=card.frequency)
    except ValueError as exc:
        raise InputError(f"Card {card.path or card.name}: bad start/frequency ({exc}).") from None


def _series(
    raw: np.ndarray,
    timestamps: pd.DatetimeIndex,
    node_ids: list[str],
    channels: tuple[str, ...],
    card: DatasetCard,
    path: Path,
    coords: np.ndarray | None = None,
) -> Series:
    mask = observed_mask(raw, card.null_value, str(path), card.allow_nonfinite)
    values = np.where(mask, raw, 0.0).astype(np.float32)
    return Series(
        values=values,
        mask=mask,
        timestamps=timestamps,
        node_ids=tuple(node_ids),
        channels=channels,
        name=card.name,
        coords=coords,
        attrs={"units": card.units, "source": str(path)},
    )


@ADAPTERS.register("pems-npz")
def load_pems_npz(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Load PEMS03/04/07/08 described by ``card`` from ``data_dir``."""
    data_dir = Path(data_dir)
    values_path = data_dir / _option(card, "values")
    edges_path = data_dir / _option(card, "edges")
    data = read_npz(values_path, str(card.options.get("key", "data")))
    picked = card.options.get("channels", [card.options.get("channel", 0)])
    if not isinstance(picked, list | tuple) or not picked:
        raise InputError(f"Card {card.path or card.name}: options.channels must be a list of ints.")
    for channel in picked:
        if not isinstance(channel, int) or not 0 <= channel < data.shape[2]:
            raise InputError(
                f"Card {card.path or card.name}: channel {channel!r} is out of range; "
                f"{values_path} has {data.shape[2]} channel(s)."
            )
    raw = data[:, :, list(picked)].astype(np.float64)
    num_nodes = raw.shape[1]
    ids_name = card.options.get("ids")
    if ids_name:
        ids_path = data_dir / ids_name
        check_file(ids_path, "sensor id file")
        node_ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
        if len(node_ids) != num_nodes:
            raise InputError(
                f"Sensor id file {ids_path} lists {len(node_ids)} ids, but {values_path} has "
                f"{num_nodes} nodes."
            )
    else:
        node_ids = [str(i) for i in range(num_nodes)]
    names = (
        card.target,
        *(PEMS_CHANNELS[c] if data.shape[2] == 3 else f"channel{c}" for c in picked[1:]),
    )
    series = _series(raw, _timestamps(card, raw.shape[0]), node_ids, names, card, values_path)
    distances, adjacency = read_edge_distances(edges_path, node_ids)
    return RawDataset(series=series, card=card, adjacency=adjacency, distances=distances)


def weekday_timestamps(
    start: str, num_steps: int, steps_per_day: int = STEPS_PER_DAY
) -> pd.DatetimeIndex:
    """``num_steps`` five-minute stamps filling whole weekdays from ``start`` (weekends skipped)."""
    if num_steps % steps_per_day:
        raise InputError(
            f"PeMSD7(M): {num_steps} rows is not a whole number of {steps_per_day}-step days."
        )
    days = pd.bdate_range(pd.Timestamp(start).normalize(), periods=num_steps // steps_per_day)
    offsets = pd.to_timedelta(np.arange(steps_per_day) * (86400 // steps_per_day), unit="s")
    # Timestamp arithmetic, not raw integers: the datetime resolution depends on pandas' version.
    return days.repeat(steps_per_day) + np.tile(offsets, len(days))


@ADAPTERS.register("pemsd7m")
def load_pemsd7m(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Load PeMSD7(M) (STGCN's ``V_228.csv`` + ``W_228.csv``) described by ``card``."""
    data_dir = Path(data_dir)
    values_path = data_dir / _option(card, "values")
    distances_path = data_dir / _option(card, "distances")
    raw = numeric_values(read_table(values_path, header=None), values_path, 1)
    distances = numeric_values(
        read_table(distances_path, "distance matrix", header=None), distances_path, 1
    )
    num_nodes = raw.shape[1]
    if distances.shape != (num_nodes, num_nodes):
        raise InputError(
            f"Distance matrix {distances_path} is {distances.shape[0]}x{distances.shape[1]}, but "
            f"{values_path} has {num_nodes} columns; it must be {num_nodes}x{num_nodes}."
        )
    if not np.isfinite(distances).all() or (distances < 0).any():
        raise InputError(f"Distance matrix {distances_path} holds NaN, inf or negative entries.")
    node_ids = [str(i) for i in range(num_nodes)]
    coords = None
    locations = card.options.get("locations")
    if locations and (data_dir / locations).is_file():
        table = read_table(data_dir / locations, "station table")
        if len(table) == num_nodes and {"ID", "Latitude", "Longitude"} <= set(table.columns):
            node_ids = [str(v) for v in table["ID"]]
            coords = table[["Latitude", "Longitude"]].to_numpy(dtype=np.float64)
    stamps = weekday_timestamps(card.start or "", raw.shape[0]) if card.start else None
    if stamps is None:
        raise InputError(f"Card {card.path or card.name}: PeMSD7(M) needs 'start' (first weekday).")
    series = _series(raw[:, :, None], stamps, node_ids, (card.target,), card, values_path, coords)
    return RawDataset(series=series, card=card, adjacency=None, distances=distances)
