"""The DCRNN format (METR-LA, PEMS-BAY): a pandas HDF5 table plus the DCRNN sensor-graph files.

``options``:
    values: the ``.h5`` file (DatetimeIndex at the card's frequency, one column per sensor id,
        0 = missing reading); key: its HDF key (default: the file's only table).
    adjacency: ``adj_mx*.pkl``, a pickled ``(sensor_ids, sensor_id_to_ind, adj)`` (Python 2
        pickle, hence ``encoding="latin1"``).
    distances: optional ``from,to,cost`` CSV (road distance; header optional). Pairs absent from it
        are ``inf``; pairs naming sensors outside the series are ignored (the LA file covers more).
    locations: optional sensor location CSV (``[index,]sensor_id,latitude,longitude``).

The sensor ids of the data and the pickle must be the same set; the graph is reordered to the
data's column order.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.base import ADAPTERS, RawDataset
from stgraph.data.adapters.tabular import build_series, check_file, check_timestamps, read_table
from stgraph.data.cards import DatasetCard
from stgraph.errors import InputError


def _sample(ids: set[str]) -> str:
    listed = sorted(ids)
    return ", ".join(listed[:5]) + (f" (+{len(listed) - 5} more)" if len(listed) > 5 else "")


def read_h5(path: Path, key: str | None) -> pd.DataFrame:
    """The DataFrame stored under ``key`` in a pandas HDF5 file, with clear errors.

    With ``key=None`` the file must hold exactly one table, which is read.
    """
    check_file(path)
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key is None and len(keys) == 1:
                key = keys[0]
            if key not in keys:
                raise InputError(
                    f"HDF5 file {path} has no key '{key}' (keys: {keys or 'none'}). Set the "
                    "card's options.key."
                )
            frame = store[key]
    except InputError:
        raise
    except Exception as exc:  # PyTables raises HDF5ExtError, OSError, ... for damaged files
        raise InputError(
            f"HDF5 file {path} cannot be read; it is truncated, corrupt or not an HDF5 file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Download "
            "it again."
        ) from None
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
        raise InputError(
            f"HDF5 file {path}: key '{key}' must hold a DataFrame with a DatetimeIndex "
            "(one column per sensor)."
        )
    return frame


def read_sensor_pickle(path: Path) -> tuple[list[str], np.ndarray]:
    """Sensor ids and adjacency from a DCRNN ``adj_mx.pkl``."""
    check_file(path, "sensor graph file")
    try:
        with open(path, "rb") as handle:
            loaded = pickle.load(handle, encoding="latin1")
    except Exception as exc:  # unpickling damaged bytes raises many types
        raise InputError(
            f"Sensor graph file {path} is not a readable pickle (truncated or corrupt?): {exc}"
        ) from None
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 3):
        raise InputError(
            f"Sensor graph file {path}: expected a pickled (sensor_ids, sensor_id_to_ind, adj) "
            "tuple as written by DCRNN's gen_adj_mx.py."
        )
    ids = [str(s) for s in loaded[0]]
    adjacency = np.asarray(loaded[2], dtype=np.float32)
    if adjacency.shape != (len(ids), len(ids)):
        raise InputError(
            f"Sensor graph file {path}: adjacency is {adjacency.shape} for {len(ids)} sensor ids."
        )
    return ids, adjacency


def _headerless(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().split(",")[0].strip().strip('"')
    try:
        float(first)
    except ValueError:
        return False
    return True


def read_distances(path: Path, node_ids: list[str]) -> np.ndarray:
    """``[N, N]`` distances in ``node_ids`` order: inf where absent, 0 on the diagonal."""
    check_file(path, "distances file")
    frame = read_table(path, "distances file", header=None if _headerless(path) else 0)
    if frame.shape[1] != 3:
        raise InputError(f"Distances file {path}: expected 3 columns (from, to, cost).")
    position = {node: i for i, node in enumerate(node_ids)}
    src = frame.iloc[:, 0].astype(str).str.strip().map(position)
    dst = frame.iloc[:, 1].astype(str).str.strip().map(position)
    cost = pd.to_numeric(frame.iloc[:, 2], errors="coerce")
    if cost.isna().any():
        row = int(np.flatnonzero(cost.isna().to_numpy())[0])
        raise InputError(f"Distances file {path}: non-numeric cost in data row {row + 1}.")
    keep = (src.notna() & dst.notna()).to_numpy()
    distances = np.full((len(node_ids), len(node_ids)), np.inf, dtype=np.float32)
    distances[src[keep].astype(int), dst[keep].astype(int)] = cost[keep].to_numpy()
    np.fill_diagonal(distances, 0.0)
    return distances


def read_locations(path: Path, node_ids: list[str]) -> np.ndarray:
    """``[N, 2]`` latitude/longitude in ``node_ids`` order (NaN for sensors not listed)."""
    check_file(path, "sensor locations file")
    frame = read_table(path, "sensor locations file", header=None if _headerless(path) else 0)
    if frame.shape[1] < 3:
        raise InputError(
            f"Sensor locations file {path}: expected columns [index,]sensor_id,latitude,longitude."
        )
    last3 = frame.iloc[:, -3:]
    ids = last3.iloc[:, 0].astype(str).str.strip()
    table = pd.DataFrame(last3.iloc[:, 1:].to_numpy(dtype=np.float64), index=ids)
    table = table[~table.index.duplicated()]
    return table.reindex(node_ids).to_numpy(dtype=np.float64)


@ADAPTERS.register("dcrnn-h5")
def load_dcrnn(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Load a DCRNN-format dataset described by ``card`` from ``data_dir``."""
    options = card.options
    where = card.path or card.name
    if not options.get("values") or not options.get("adjacency"):
        raise InputError(
            f"Card {where}: a dcrnn-h5 card needs options.values (the .h5 file) and "
            "options.adjacency (the adj_mx .pkl file)."
        )
    data_dir = Path(data_dir)
    values_path = data_dir / options["values"]
    graph_path = data_dir / options["adjacency"]

    frame = read_h5(values_path, options.get("key"))
    node_ids = [str(c).strip() for c in frame.columns]
    if len(set(node_ids)) != len(node_ids):
        raise InputError(f"HDF5 file {values_path}: duplicate sensor id columns.")
    index = pd.DatetimeIndex(frame.index)
    check_timestamps(index, values_path, 1, "row")
    try:
        raw = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"HDF5 file {values_path}: the sensor columns must be numeric.") from None

    graph_ids, adjacency = read_sensor_pickle(graph_path)
    if set(graph_ids) != set(node_ids) or len(graph_ids) != len(node_ids):
        only_data = set(node_ids) - set(graph_ids)
        only_graph = set(graph_ids) - set(node_ids)
        raise InputError(
            f"Sensor ids disagree between {values_path} ({len(node_ids)} sensors) and "
            f"{graph_path} ({len(graph_ids)} sensors). Only in the data: "
            f"{_sample(only_data) or 'none'}; only in the graph: {_sample(only_graph) or 'none'}. "
            "Use the graph file that belongs to this data file."
        )
    order = [graph_ids.index(node) for node in node_ids]
    adjacency = adjacency[np.ix_(order, order)]

    distances = coords = None
    if options.get("distances") and (data_dir / options["distances"]).exists():
        distances = read_distances(data_dir / options["distances"], node_ids)
    if options.get("locations") and (data_dir / options["locations"]).exists():
        coords = read_locations(data_dir / options["locations"], node_ids)
    series = build_series(raw, index, node_ids, card, values_path, coords=coords)
    return RawDataset(series=series, card=card, adjacency=adjacency, distances=distances)
