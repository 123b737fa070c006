"""Bring your own data: a CSV or Parquet table of readings per node, plus an optional graph file.

Layouts (auto-detected):
    long: exactly the columns ``timestamp`` (or ``time``/``date``), ``node`` and ``value``.
    wide: one timestamp column (the first datetime-like column) and one numeric column per node.

Timestamps must be unique and increasing. They are placed on a regular grid (the card's
frequency, ``--freq``, or the inferred one); steps missing from the grid are inserted as fully
masked rows, so a gap in the file reads as missing readings rather than as a shorter interval.

Graph files (auto-detected): an edge list with a ``from,to,weight`` header (``from,to,cost`` is a
distance: it fills ``distances`` and a 0/1 adjacency), or an ``N x N`` numeric adjacency matrix,
optionally with a header row of node ids (then reordered to the series' node order).

This module also holds the checked CSV/Parquet readers the other adapters share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.base import ADAPTERS, RawDataset, observed_mask
from stgraph.data.cards import DatasetCard, SourceFile
from stgraph.data.series import Series
from stgraph.errors import InputError

TIME_COLUMNS = ("timestamp", "time", "date", "datetime")


# ----------------------------------------------------------------------------- checked readers
def check_file(path: Path, what: str = "data file") -> None:
    """Raise `InputError` if ``path`` is missing, not a file, or empty."""
    if not path.exists():
        raise InputError(f"The {what} {path} does not exist. Check the path (or --data-dir).")
    if not path.is_file():
        raise InputError(f"The {what} {path} is not a file.")
    if path.stat().st_size == 0:
        raise InputError(f"The {what} {path} is empty (0 bytes); download or write it again.")


def read_table(path: Path, what: str = "data file", header: int | None = 0) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning parse failures into an `InputError` naming the file."""
    check_file(path, what)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise InputError(
                f"The {what} {path} is not a readable Parquet file (truncated or corrupt?): {exc}"
            ) from None
    else:
        try:
            frame = pd.read_csv(path, header=header, on_bad_lines="error", skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise InputError(f"The {what} {path} has no rows or columns.") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(
                f"The {what} {path} is not a well-formed CSV file (ragged rows or bad "
                f"encoding?): {str(exc).strip()}"
            ) from None
    if frame.shape[0] == 0:
        raise InputError(f"The {what} {path} has a header but no data rows.")
    if path.suffix.lower() not in (".parquet", ".pq"):
        _check_last_row(path, frame.shape[1], what)
    return frame


def _check_last_row(path: Path, columns: int, what: str) -> None:
    """Raise `InputError` if the last line has fewer fields than the table has columns.

    pandas pads a short row with NaN, so a file cut off in the middle of a row (an interrupted
    download or copy) would otherwise load with its last readings silently missing.
    """
    import csv

    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - 65536)
        handle.seek(start)
        tail = handle.read().decode("utf-8", errors="replace")
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines or (start > 0 and len(lines) < 2):
        return  # the last line is longer than the tail read: do not guess
    fields = next(csv.reader([lines[-1]], skipinitialspace=True))
    if len(fields) < columns:
        shown = lines[-1] if len(lines[-1]) <= 80 else lines[-1][:77] + "..."
        raise InputError(
            f"The {what} {path} is truncated or has an incomplete last row: its last line has "
            f"{len(fields)} of {columns} fields ({shown!r}). Download or write the file again."
        )


def numeric_values(frame: pd.DataFrame, path: Path, row_offset: int = 2) -> np.ndarray:
    """``frame`` as a float64 array; a non-numeric cell is an `InputError` naming its position.

    ``row_offset`` turns a 0-based data-row index into the line number shown to the user (2 for a
    CSV with a header line, 1 without one).
    """
    converted = frame.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna().to_numpy() & frame.notna().to_numpy()
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        cell = frame.iat[row, col]
        raise InputError(
            f"{path}: non-numeric value {cell!r} in column '{frame.columns[col]}' at line "
            f"{row + row_offset} ({int(bad.sum())} such cell(s)). Every reading must be a number "
            "(leave a cell empty or write NaN for a missing reading)."
        )
    return converted.to_numpy(dtype=np.float64)


def check_timestamps(
    index: pd.DatetimeIndex, path: Path, row_offset: int = 2, label: str = "line"
) -> None:
    """Raise `InputError` on duplicate or decreasing timestamps, naming the first offender."""
    if index.hasnans:
        row = int(np.flatnonzero(index.isna())[0])
        raise InputError(f"{path}: missing or unreadable timestamp at {label} {row + row_offset}.")
    values = index.asi8
    steps = np.diff(values)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        kind = "duplicate" if steps[row - 1] == 0 else "out-of-order"
        raise InputError(
            f"{path}: {kind} timestamp {index[row]} at {label} {row + row_offset}. Timestamps "
            "must be unique and sorted in increasing order."
        )


def infer_frequency(index: pd.DatetimeIndex, path: Path) -> str:
    """The sampling interval: ``pd.infer_freq``, else the median step (files with gaps)."""
    if len(index) < 2:
        raise InputError(f"{path}: need at least 2 timestamps to infer the frequency; pass --freq.")
    freq = pd.infer_freq(index) if len(index) >= 3 else None
    if freq is None:
        # asi8 units follow the index resolution (us in pandas 3), so go through nanoseconds.
        steps = np.diff(index.as_unit("ns").asi8)
        median = pd.Timedelta(int(np.median(steps)), unit="ns")
        freq = pd.tseries.frequencies.to_offset(median).freqstr
    return freq


def regular_grid(
    index: pd.DatetimeIndex, freq: str, path: Path
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The regular grid from the first to the last timestamp and each timestamp's grid row.

    Raises `InputError` if a timestamp falls between grid points (wrong ``--freq``).
    """
    try:
        grid = pd.date_range(index[0], index[-1], freq=freq)
    except ValueError as exc:
        raise InputError(f"{path}: invalid frequency '{freq}' ({exc}).") from None
    rows = grid.get_indexer(index)
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        raise InputError(
            f"{path}: timestamp {index[first]} is not on the {freq} grid that starts at "
            f"{index[0]}. Pass the right --freq, or resample the file."
        )
    return grid, rows


def build_series(
    raw: np.ndarray,
    index: pd.DatetimeIndex,
    node_ids: list[str],
    card: DatasetCard,
    path: Path,
    coords: np.ndarray | None = None,
    present: np.ndarray | None = None,
) -> Series:
    """A `Series` from ``raw [rows, N]`` readings at ``index``, gaps filled as masked rows.

    ``present`` (optional, ``[rows, N]`` bool) marks cells that exist in the file at all; absent
    cells are masked without being judged by the card's null-value rule.
    """
    grid, rows = regular_grid(index, card.frequency, path)
    if present is not None:
        raw = np.where(present, raw, 1.0)  # any finite non-null stand-in; masked below
    observed = observed_mask(raw, card.null_value, str(path), card.allow_nonfinite)
    if present is not None:
        observed &= present
    values = np.zeros((len(grid), raw.shape[1], 1), dtype=np.float32)
    mask = np.zeros(values.shape, dtype=bool)
    values[rows, :, 0] = np.where(observed, raw, 0.0)
    mask[rows, :, 0] = observed
    attrs = {"units": card.units, "source": str(path), "inserted_steps": len(grid) - len(index)}
    return Series(
        values=values,
        mask=mask,
        timestamps=grid,
        node_ids=tuple(node_ids),
        channels=(card.target,),
        name=card.name,
        coords=coords,
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- values
def _parse_times(column: pd.Series, path: Path, name: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(pd.to_datetime(column, format="mixed"))
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{path}: column '{name}' holds values that are not dates ({exc})."
        ) from None


def _looks_like_time(column: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False  # numbers would parse as epoch offsets; never guess that
    sample = column.dropna().head(20)
    if sample.empty:
        return False
    try:
        pd.to_datetime(sample.astype(str), format="mixed")
    except (ValueError, TypeError):
        return False
    return True


def read_values(
    path: Path, card: DatasetCard
) -> tuple[np.ndarray, pd.DatetimeIndex, list[str], np.ndarray | None]:
    """Readings ``[rows, N]``, timestamps, node ids and (long layout) which cells were present."""
    frame = read_table(path)
    offset = 1 if path.suffix.lower() in (".parquet", ".pq") else 2
    lower = {str(c).strip().lower(): c for c in frame.columns}
    time_names = [lower[n] for n in TIME_COLUMNS if n in lower]
    if len(frame.columns) == 3 and len(time_names) == 1 and {"node", "value"} <= set(lower):
        time_col, node_col, value_col = time_names[0], lower["node"], lower["value"]
        times = _parse_times(frame[time_col], path, str(time_col))
        readings = numeric_values(frame[[value_col]], path, offset)[:, 0]
        long = pd.DataFrame({"t": times, "node": frame[node_col].astype(str), "v": readings})
        dup = long.duplicated(["t", "node"])
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise InputError(
                f"{path}: duplicate reading for node '{long['node'].iat[row]}' at "
                f"{long['t'].iat[row]} (line {row + offset}). Each (timestamp, node) pair must "
                "appear once."
            )
        node_ids = list(dict.fromkeys(long["node"]))  # first-appearance order
        wide = long.pivot(index="t", columns="node", values="v")[node_ids]
        check_timestamps(pd.DatetimeIndex(wide.index), path, offset)
        # (timestamp, node) pairs absent from a long file are missing readings under any rule.
        long["seen"] = True
        present = long.pivot(index="t", columns="node", values="seen")[node_ids]
        present = present.fillna(False).to_numpy(dtype=bool)
        return wide.to_numpy(dtype=np.float64), pd.DatetimeIndex(wide.index), node_ids, present
    time_col = next((c for c in frame.columns if _looks_like_time(frame[c])), None)
    if time_col is None:
        raise InputError(
            f"{path}: found no timestamp column. A wide table needs a date/time column (e.g. "
            "'timestamp') and one numeric column per node; a long table needs exactly the "
            "columns timestamp, node, value."
        )
    times = _parse_times(frame[time_col], path, str(time_col))
    check_timestamps(times, path, offset)
    nodes = frame.drop(columns=[time_col])
    if nodes.shape[1] == 0:
        raise InputError(f"{path}: no node columns besides the timestamp column '{time_col}'.")
    raw = numeric_values(nodes, path, offset)
    return raw, times, [str(c) for c in nodes.columns], None


# ----------------------------------------------------------------------------- graph
def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _first_line(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [t.strip().strip('"').lower() for t in handle.readline().split(",")]


def read_graph(
    path: Path, node_ids: list[str], values_path: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Adjacency ``[N, N]`` (series node order) and distances (or None) from a graph CSV."""
    check_file(path, "graph file")
    n = len(node_ids)
    position = {node: i for i, node in enumerate(node_ids)}
    head = _first_line(path)
    if len(head) >= 3 and head[0] == "from" and head[1] == "to":
        frame = read_table(path, "graph file")
        weight_col = next((c for c in ("weight", "cost", "distance") if c in head[2:]), None)
        if weight_col is None:
            raise InputError(
                f"Graph file {path}: an edge list needs a third column named weight or cost "
                f"(distance); found {head}."
            )
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        weights = numeric_values(frame[[weight_col]], path)[:, 0]
        sources, targets = frame["from"].astype(str), frame["to"].astype(str)
        unknown = sorted(set(sources).union(targets) - set(position))
        if unknown:
            raise InputError(
                f"Graph file {path} names node(s) that are not columns of {values_path}: "
                f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}. Node ids must match."
            )
        i = sources.map(position).to_numpy()
        j = targets.map(position).to_numpy()
        adjacency = np.zeros((n, n), dtype=np.float32)
        if weight_col == "weight":
            adjacency[i, j] = weights
            return adjacency, None
        distances = np.full((n, n), np.inf, dtype=np.float32)
        distances[i, j] = weights
        np.fill_diagonal(distances, 0.0)
        adjacency[i, j] = 1.0
        return adjacency, distances
    has_header = not all(_is_number(t) for t in head if t)
    frame = read_table(path, "graph file", header=0 if has_header else None)
    matrix = numeric_values(frame, path, 2 if has_header else 1).astype(np.float32)
    if matrix.shape != (n, n):
        raise InputError(
            f"Graph file {path}: adjacency matrix is {matrix.shape[0]}x{matrix.shape[1]}, but "
            f"{values_path} has {n} nodes; it must be {n}x{n} (or use a from,to,weight edge list)."
        )
    if has_header or set(map(str, frame.columns)) == set(node_ids):
        header = [str(c).strip() for c in frame.columns]
        if set(header) != set(node_ids):
            extra = sorted(set(header) - set(node_ids))[:5]
            lacking = sorted(set(node_ids) - set(header))[:5]
            raise InputError(
                f"Graph file {path}: header node ids disagree with the columns of {values_path} "
                f"(only in the graph: {extra}; only in the data: {lacking})."
            )
        order = [header.index(node) for node in node_ids]
        matrix = matrix[np.ix_(order, order)]
    if not np.isfinite(matrix).all():
        raise InputError(f"Graph file {path}: the adjacency matrix holds NaN or inf values.")
    return matrix, None


# ----------------------------------------------------------------------------- entry points
@ADAPTERS.register("tabular")
def load_tabular(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Load a ``tabular`` card: ``options: {values: FILE, graph: FILE (optional)}``."""
    values_name = card.options.get("values") or (card.files[0].name if card.files else None)
    if not values_name:
        raise InputError(f"Card {card.path or card.name}: options.values names no data file.")
    values_path = Path(data_dir) / values_name
    raw, times, node_ids, present = read_values(values_path, card)
    series = build_series(raw, times, node_ids, card, values_path, present=present)
    adjacency = distances = None
    if card.options.get("graph"):
        adjacency, distances = read_graph(
            Path(data_dir) / card.options["graph"], node_ids, values_path
        )
    return RawDataset(series=series, card=card, adjacency=adjacency, distances=distances)


def open_file_dataset(
    path: str | Path,
    graph: str | Path | None = None,
    freq: str | None = None,
    null_value: str = "nan",
) -> RawDataset:
    """Open a user's CSV/Parquet file (and optional graph CSV) without a shipped card.

    Args:
        path: the table (long or wide layout, see the module docstring).
        graph: optional edge list or adjacency matrix CSV.
        freq: sampling interval such as ``"15min"``; inferred from the timestamps when None.
        null_value: ``"nan"`` (empty/NaN cells are missing), ``"zero"`` (0 is missing too) or
            ``"none"`` (every cell must hold a real reading).

    Returns:
        The dataset, with an in-memory card (``format="tabular"``). Timestamps missing from the
        regular grid are inserted as masked rows.
    """
    path = Path(path).expanduser().resolve()
    graph_path = Path(graph).expanduser().resolve() if graph is not None else None
    probe = DatasetCard(
        name=path.stem, format="tabular", files=(), frequency=freq or "", null_value=null_value
    )
    if not freq:
        _, times, _, _ = read_values(path, probe)
        freq = infer_frequency(times, path)
    files = [SourceFile(name=str(path))]
    options = {"values": str(path)}
    if graph_path is not None:
        files.append(SourceFile(name=str(graph_path)))
        options["graph"] = str(graph_path)
    card = DatasetCard(
        name=path.stem,
        format="tabular",
        files=tuple(files),
        frequency=freq,
        null_value=null_value,
        domain="custom",
        title=path.name,
        description=f"User file {path}",
        split={"method": "ratio", "ratios": [0.7, 0.1, 0.2]},
        graph={"method": "adjacency"} if graph_path is not None else {"method": "none"},
        options=options,
    )
    return load_tabular(card, path.parent)
