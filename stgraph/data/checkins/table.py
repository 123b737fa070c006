"""Bring your own check-ins: a long CSV or Parquet table with one row per check-in.

Columns (any letter case): ``user``, ``timestamp``, ``location`` and optionally ``category``,
``lat`` and ``lon`` (or ``latitude``/``longitude``). A timestamp with a UTC offset
(``2012-04-03 14:00:09-04:00``) becomes its local wall time, the offset kept in
``utc_offset_minutes``; a naive timestamp is taken as local time (no offsets are then known).
Offsets must be given on every row or on none. A Parquet column of zoned datetimes works too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.tabular import read_table
from stgraph.data.cards import DatasetCard
from stgraph.data.checkins.formats import READERS, option_paths
from stgraph.data.checkins.log import check_coords, fail_at, make_log, numbers
from stgraph.data.events import EventLog
from stgraph.errors import InputError

REQUIRED = ("user", "timestamp", "location")
ALIASES = {"latitude": "lat", "longitude": "lon", "lng": "lon"}
# A wall time ending in a clock time, then an optional offset: Z, +hh:mm, +hhmm or +hh. (An
# offset only counts after a clock time, so the day of "2012-04-03" is not read as one.)
_OFFSET = (
    r"^(?P<wall>.*?\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def read_checkin_table(path: str | Path, name: str | None = None) -> EventLog:
    """Read a long table of check-ins (see the module docstring) into an `EventLog`."""
    path = Path(path)
    frame = read_table(path, "check-in table")
    frame = _normalise_columns(frame, path)
    offset = 2 if path.suffix.lower() not in (".parquet", ".pq") else 1
    row_label = "line" if offset == 2 else "row"
    for column in REQUIRED + tuple(c for c in ("category",) if c in frame):
        empty = (frame[column].isna() | (frame[column].astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            fail_at(path, empty, frame[column], f"empty {column}", offset, row_label)
    time, minutes = parse_local_times(frame["timestamp"], path, offset, row_label)
    table = pd.DataFrame({"user": frame["user"], "location": frame["location"], "time": time})
    if "category" in frame:
        table["category"] = frame["category"].astype(str)
    if ("lat" in frame) != ("lon" in frame):
        raise InputError(f"{path}: give both lat and lon columns, or neither.")
    if "lat" in frame:
        table["lat"] = numbers(frame, "lat", path, offset)
        table["lon"] = numbers(frame, "lon", path, offset)
        check_coords(
            table["lat"].to_numpy(), table["lon"].to_numpy(), path, offset, label=row_label
        )
    if minutes is not None:
        table["utc_offset"] = minutes
    attrs = {
        "format": "checkin-table",
        "clock": "local",
        "dates": "real",
        "coords": "degrees",
        "files": [path.name],
    }
    return make_log(table, name or path.stem, attrs=attrs)


def _normalise_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    renamed = {c: ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in frame}
    frame = frame.rename(columns=renamed)
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: column '{duplicated[0]}' appears twice (names ignore case).")
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise InputError(
            f"{path}: a check-in table needs the columns {list(REQUIRED)} (any case; optional: "
            f"category, lat, lon); missing {missing}, found {[str(c) for c in renamed]}."
        )
    return frame


def parse_local_times(
    stamps: pd.Series, path: Path, row_offset: int, label: str = "line"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Local wall times (datetime64[s]) and UTC offsets in minutes (None for naive stamps)."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        wall = stamps.dt.tz_localize(None)
        utc = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        minutes = ((wall - utc) // pd.Timedelta(minutes=1)).to_numpy(np.int64)
        return wall.to_numpy().astype("datetime64[s]"), minutes.astype(np.int32)
    if stamps.dtype.kind == "M":
        return stamps.to_numpy().astype("datetime64[s]"), None
    if stamps.dtype.kind in "iufb":
        fail_at(
            path,
            np.ones(len(stamps), bool),
            stamps,
            "timestamp is a number, not a date (write ISO dates like '2012-04-03 14:00:09-04:00')",
            row_offset,
            label,
        )
    text = stamps.astype(str).str.strip()
    parts = text.str.extract(_OFFSET)
    parts["wall"] = parts["wall"].fillna(text)  # no clock time: a date, no offset
    wall = pd.to_datetime(parts["wall"], format="ISO8601", errors="coerce").to_numpy()
    if np.isnat(wall).any():
        fail_at(
            path,
            np.isnat(wall),
            text,
            "unparseable timestamp (expected ISO like '2012-04-03 14:00:09-04:00')",
            row_offset,
            label,
        )
    has_offset = parts["offset"].notna().to_numpy()
    if not has_offset.any():
        return wall.astype("datetime64[s]"), None
    if not has_offset.all():
        fail_at(
            path,
            ~has_offset,
            text,
            "timestamp without a UTC offset while others have "
            "one (give offsets on every row or on none)",
            row_offset,
            label,
        )
    code = parts["offset"].str.replace(":", "", regex=False).replace("Z", "+0000")
    code = code.str.pad(5, side="right", fillchar="0")  # "+09" -> "+0900"
    sign = np.where(code.str[0] == "-", -1, 1)
    minutes = sign * (code.str[1:3].astype(int) * 60 + code.str[3:5].astype(int)).to_numpy()
    if (np.abs(minutes) > 14 * 60).any():
        fail_at(
            path, np.abs(minutes) > 14 * 60, text, "UTC offset beyond 14 hours", row_offset, label
        )
    return wall.astype("datetime64[s]"), minutes.astype(np.int32)


@READERS.register("checkin-table")
def _table(card: DatasetCard, folder: Path) -> EventLog:
    return read_checkin_table(option_paths(card, folder, "checkins")[0], card.name)
