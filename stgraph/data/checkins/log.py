"""From a table of check-ins to an `EventLog`, and the checks every check-in reader shares.

Readers parse their own format into one `pandas.DataFrame` with the columns ``user``,
``location``, ``time`` (naive local datetimes) and, where the source has them, ``category``
(names), ``lat`` and ``lon`` (per event), ``utc_offset`` (minutes) and ``session``; `make_log`
encodes ids, sorts and attaches coordinates. The checks name the file, the line and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from stgraph.data.events import EventLog
from stgraph.errors import InputError

WEEK_EPOCH = np.datetime64("1970-01-05T00:00:00", "s")  # a Monday: day 0 of synthetic weeks


def fail_at(
    path: Path | str,
    bad: np.ndarray,
    values: Any,
    problem: str,
    row_offset: int,
    label: str = "line",
) -> NoReturn:
    """Raise `InputError` for the first ``True`` of ``bad``: the file, its line and its value.

    ``row_offset`` turns a 0-based row into a line number (2 below a header line, 1 without);
    ``label`` names the unit (``"row"`` with offset 0 for arrays).
    """
    rows = np.flatnonzero(np.asarray(bad))
    first = int(rows[0])
    value = np.asarray(values, dtype=object)[first]
    more = f" ({len(rows)} such rows)" if len(rows) > 1 else ""
    raise InputError(f"{path}: {problem} at {label} {first + row_offset}: {value!r}{more}.")


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], path: Path, what: str) -> None:
    """Raise `InputError` naming the columns of ``required`` that ``frame`` lacks."""
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: not a {what} file: missing column(s) {missing}; it has "
            f"{[str(c) for c in frame.columns]}. Expected the columns {list(required)}."
        )


def numbers(
    frame: pd.DataFrame, column: str, path: Path, row_offset: int, integer: bool = False
) -> np.ndarray:
    """Column ``column`` as float64 (or int64); a cell that is not a number is an `InputError`."""
    raw = frame[column]
    converted = pd.to_numeric(raw, errors="coerce")
    values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & ~_is_nan_text(raw)
    if integer:
        bad |= np.isnan(values) | (np.isfinite(values) & (values != np.round(values)))
    if bad.any():
        kind = "an integer" if integer else "a number"
        fail_at(
            path, bad, raw.to_numpy(dtype=object), f"column '{column}' is not {kind}", row_offset
        )
    return values.astype(np.int64) if integer else values


def _is_nan_text(raw: pd.Series) -> np.ndarray:
    """Cells that spell NaN (or are missing): a number column may hold them, checked later."""
    if raw.dtype.kind in "fiub":
        return raw.isna().to_numpy()
    text = raw.astype("string").str.strip().str.lower()
    return (raw.isna() | text.isin(["nan", "inf", "-inf", "+inf", "infinity"])).to_numpy(dtype=bool)


def check_coords(
    lat: np.ndarray,
    lon: np.ndarray,
    path: Path,
    row_offset: int,
    limits: tuple[float, float] = (90.0, 180.0),
    label: str = "line",
) -> None:
    """Coordinates must be finite and within ``limits`` (degrees: (90, 180); normalised: (1, 1))."""
    for name, values, limit in (("latitude", lat, limits[0]), ("longitude", lon, limits[1])):
        if not np.isfinite(values).all():
            fail_at(path, ~np.isfinite(values), values, f"non-finite {name}", row_offset, label)
        outside = np.abs(values) > limit
        if outside.any():
            problem = f"{name} outside [-{limit:g}, {limit:g}]"
            fail_at(path, outside, values, problem, row_offset, label)


def encode(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Dense int64 ids in the sorted order of the original values, and those values."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def names(uniques: pd.Index) -> np.ndarray:
    """Original ids as an object array of strings (the vocabularies of `EventLog`)."""
    return np.asarray(uniques.astype(str), dtype=object)


def make_log(
    frame: pd.DataFrame,
    name: str,
    places: pd.DataFrame | None = None,
    week_only: bool = False,
    attrs: dict[str, Any] | None = None,
) -> EventLog:
    """An `EventLog` from a parsed table (see the module docstring for its columns).

    Events are sorted by user, then time; ties keep the table's row order. Users, locations
    and categories get dense ids in the sorted order of their original ids (names).

    Args:
        frame: the check-ins, already validated by the reader.
        name: the data's name for messages.
        places: coordinates per location (index: the original location ids; columns ``lat``,
            ``lon``), for sources that give them per place rather than per event.
        week_only: the source has weekdays and hours but no dates.
        attrs: provenance for the card and MLflow.
    """
    attrs = dict(attrs or {})
    user, users = encode(frame["user"])
    location, locations = encode(frame["location"])
    time = frame["time"].to_numpy().astype("datetime64[s]")
    # lexsort is stable, and the row index as the last key makes the tie order explicit.
    order = np.lexsort((np.arange(len(frame)), time, user))
    category, categories = None, np.array([], dtype=object)
    if "category" in frame:
        category, categories = encode(frame["category"])
        category = category[order]
    coords = None
    if places is not None:
        coords = places.loc[locations, ["lat", "lon"]].to_numpy(dtype=np.float64)
    elif "lat" in frame:
        coords, several = _first_coords(location, frame, order)
        attrs["locations_with_several_coords"] = several
    optional = {
        column: frame[column].to_numpy()[order].astype(dtype)
        for column, dtype in (("utc_offset", np.int32), ("session", np.int64))
        if column in frame
    }
    return EventLog(
        user=user[order],
        time=time[order],
        location=location[order],
        users=names(users),
        locations=names(locations),
        category=category,
        categories=categories if category is None else names(categories),
        coords=coords,
        utc_offset_minutes=optional.get("utc_offset"),
        session=optional.get("session"),
        week_only=week_only,
        name=name,
        attrs=attrs,
    )


def _first_coords(
    location: np.ndarray, frame: pd.DataFrame, order: np.ndarray
) -> tuple[np.ndarray, int]:
    """Each location's coordinates where it is first seen in time, and how many locations
    have more than one distinct (lat, lon) in the file."""
    lat = frame["lat"].to_numpy(dtype=np.float64)
    lon = frame["lon"].to_numpy(dtype=np.float64)
    _, first = np.unique(location[order], return_index=True)  # every id occurs: one per id
    coords = np.column_stack([lat[order][first], lon[order][first]])
    pairs = pd.DataFrame({"location": location, "lat": lat, "lon": lon}).drop_duplicates()
    several = int((pairs["location"].value_counts() > 1).sum())
    return coords, several


def week_time(week: np.ndarray, day: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Synthetic datetimes for sources without dates: ``week`` weeks after `WEEK_EPOCH` (a
    Monday), plus ``day`` days (0 = Monday) and ``minutes``."""
    days = np.asarray(week, np.int64) * 7 + np.asarray(day, np.int64)
    offset = days * 1440 + np.asarray(minutes, np.int64)
    return WEEK_EPOCH + offset.astype("timedelta64[m]")
