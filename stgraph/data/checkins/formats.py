"""Readers of the published Foursquare check-in formats, each registered under a card ``format``.

- ``tsmc2014``: the raw TSMC2014 files of Yang et al. (``dataset_TSMC2014_{NYC,TKY}.txt``).
- ``stan-npy``: the filtered NYC set shipped with STAN (``NYC.npy`` + ``NYC_POI.npy``).
- ``trajgan-csv``: the weekly NYC trajectories of LSTM-TrajGAN (``{train,test}_latlon.csv``).
- ``llmmob-csv``: the NYC staypoint set of LLM-Mob (``foursquare_{train,valid,test}.csv``).

Each reader returns an `EventLog` in local time where the source allows it; ``attrs`` records
what the times and coordinates mean (``clock``: ``local`` or ``relative``; ``dates``: ``real``,
``relative`` or ``none``; ``coords``: ``degrees`` or ``normalised``), so tasks and graph builders
know which time features and distance radii apply.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.tabular import check_file, read_table
from stgraph.data.cards import DatasetCard
from stgraph.data.checkins.log import (
    check_coords,
    fail_at,
    make_log,
    numbers,
    require_columns,
    week_time,
)
from stgraph.data.events import EventLog
from stgraph.errors import InputError
from stgraph.registry import Registry

Reader = Callable[[DatasetCard, Path], EventLog]
READERS: Registry[Reader] = Registry("check-in format", packages=("stgraph.data.checkins",))

TSMC_COLUMNS = (
    "userId",
    "venueId",
    "venueCategoryId",
    "venueCategory",
    "latitude",
    "longitude",
    "timezoneOffset",
    "utcTimestamp",
)
TSMC_TIME = "%a %b %d %H:%M:%S +0000 %Y"  # "Tue Apr 03 18:00:09 +0000 2012"
STAN_EPOCH = "2000-01-03"  # a Monday; an arbitrary origin for STAN's relative minutes
TRAJGAN_COLUMNS = ("tid", "label", "lat", "lon", "day", "hour", "category")
LLMMOB_COLUMNS = (
    "id",
    "user_id",
    "location_id",
    "latitude",
    "longitude",
    "start_day",
    "start_min",
    "weekday",
)


def option_paths(card: DatasetCard, folder: Path, key: str) -> list[Path]:
    """The file(s) named by ``card.options[key]`` (a name or a list of names) in ``folder``."""
    value = card.options.get(key)
    if not value:
        raise InputError(f"Card {card.path or card.name}: options.{key} must name the file(s).")
    return [Path(folder) / name for name in ([value] if isinstance(value, str) else value)]


# ------------------------------------------------------------------------------------- TSMC2014
def read_tsmc2014(path: str | Path, name: str | None = None) -> EventLog:
    """Read a raw TSMC2014 file: tab-separated, Latin-1, no header, the 8 `TSMC_COLUMNS`.

    Local time is the UTC timestamp plus the file's ``timezoneOffset`` (minutes), which is kept
    as ``utc_offset_minutes``. Categories are the venue category *names*; a venue's coordinates
    are those of its first check-in (``attrs["locations_with_several_coords"]`` counts venues
    whose check-ins disagree).
    """
    path = Path(path)
    check_file(path, "TSMC2014 check-in file")
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=list(TSMC_COLUMNS),
            dtype=str,
            encoding="latin-1",
            quoting=csv.QUOTE_NONE,
            index_col=False,
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="error",
        )
    except pd.errors.ParserError as exc:
        raise InputError(
            f"{path}: not a TSMC2014 check-in file (8 tab-separated fields per line): "
            f"{str(exc).strip()}"
        ) from None
    offset = 1
    if len(frame) and frame.iat[0, 0] == "userId":  # tolerate a header line
        frame, offset = frame.iloc[1:].reset_index(drop=True), 2
    if frame.empty:
        raise InputError(f"{path}: the TSMC2014 check-in file has no check-ins.")
    # A short line leaves its last field, the timestamp, empty (pandas pads it).
    for column in ("utcTimestamp", "userId", "venueId"):
        empty = (frame[column].isna() | (frame[column].str.strip() == "")).to_numpy()
        if empty.any():
            _fail_tsmc_line(path, empty, frame, column, offset)
    frame = frame.fillna({"venueCategoryId": "", "venueCategory": ""})
    lat = numbers(frame, "latitude", path, offset)
    lon = numbers(frame, "longitude", path, offset)
    check_coords(lat, lon, path, offset)
    minutes = numbers(frame, "timezoneOffset", path, offset, integer=True)
    if (np.abs(minutes) > 14 * 60).any():
        fail_at(path, np.abs(minutes) > 14 * 60, minutes, "timezoneOffset beyond 14 hours", offset)
    utc = pd.to_datetime(frame["utcTimestamp"], format=TSMC_TIME, errors="coerce").to_numpy()
    if np.isnat(utc).any():
        problem = "unparseable utcTimestamp (expected like 'Tue Apr 03 18:00:09 +0000 2012')"
        fail_at(path, np.isnat(utc), frame["utcTimestamp"], problem, offset)
    table = pd.DataFrame(
        {
            "user": frame["userId"],
            "location": frame["venueId"],
            "time": utc + minutes.astype("timedelta64[m]"),
            "category": frame["venueCategory"],
            "lat": lat,
            "lon": lon,
            "utc_offset": minutes,
        }
    )
    attrs = {
        "format": "tsmc2014",
        "clock": "local",
        "dates": "real",
        "coords": "degrees",
        "files": [path.name],
    }
    return make_log(table, name or path.stem, attrs=attrs)


def _fail_tsmc_line(
    path: Path, bad: np.ndarray, frame: pd.DataFrame, column: str, offset: int
) -> None:
    row = int(np.flatnonzero(bad)[0])
    with open(path, encoding="latin-1") as handle:
        line = next(itertools.islice(handle, row + offset - 1, None), "").rstrip("\r\n")
    fields = len(line.split("\t"))
    if fields < len(TSMC_COLUMNS):
        shown = line if len(line) <= 80 else line[:77] + "..."
        raise InputError(
            f"{path}: line {row + offset} has {fields} tab-separated field(s), not 8: not the "
            f"TSMC2014 format ({', '.join(TSMC_COLUMNS)}; no header): {shown!r}"
        )
    fail_at(path, bad, frame[column].fillna(""), f"empty {column}", offset)


@READERS.register("tsmc2014")
def _tsmc2014(card: DatasetCard, folder: Path) -> EventLog:
    return read_tsmc2014(option_paths(card, folder, "checkins")[0], card.name)


# ------------------------------------------------------------------------------------------ STAN
def _load_rows(path: Path, what: str, kinds: str) -> np.ndarray:
    check_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc}).") from None
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in kinds or not len(array):
        raise InputError(
            f"{path}: not a {what}: expected a non-empty numeric array of shape [N, 3], got "
            f"shape {list(array.shape)} and dtype {array.dtype}."
        )
    return array


def read_stan(
    checkins: str | Path, pois: str | Path, epoch: str = STAN_EPOCH, name: str | None = None
) -> EventLog:
    """Read STAN's ``NYC.npy`` (rows ``[user, poi, minute]``) and ``NYC_POI.npy`` (rows
    ``[poi, lat, lon]``).

    The minutes are relative, with no documented origin or time zone, and not sorted within a
    user. Time is ``epoch`` plus the minutes, so hours and weekdays read from it are NOT real
    local times (``attrs["clock"] = "relative"``); gaps between check-ins are real. No
    categories.
    """
    checkins, pois = Path(checkins), Path(pois)
    rows = _load_rows(checkins, "STAN check-in array (rows [user, poi, minute])", "iu")
    places = _load_rows(pois, "STAN POI array (rows [poi, lat, lon])", "iuf")
    poi_ids = places[:, 0]
    if (poi_ids != np.round(poi_ids)).any() or len(np.unique(poi_ids)) != len(poi_ids):
        raise InputError(f"{pois}: the first column must hold unique integer POI ids.")
    check_coords(places[:, 1], places[:, 2], pois, 0, label="row")
    unknown = ~np.isin(rows[:, 1], poi_ids)
    if unknown.any():
        fail_at(
            checkins, unknown, rows[:, 1], f"POI id without coordinates in {pois.name}", 0, "row"
        )
    try:
        origin = np.datetime64(pd.Timestamp(epoch).to_datetime64(), "s")
    except ValueError:
        raise InputError(f"STAN epoch {epoch!r} is not a date.") from None
    table = pd.DataFrame(
        {
            "user": rows[:, 0],
            "location": rows[:, 1],
            "time": origin + rows[:, 2].astype(np.int64).astype("timedelta64[m]"),
        }
    )
    coords = pd.DataFrame(
        {"lat": places[:, 1], "lon": places[:, 2]}, index=poi_ids.astype(rows.dtype)
    )
    attrs = {
        "format": "stan-npy",
        "clock": "relative",
        "dates": "relative",
        "coords": "degrees",
        "epoch": str(origin),
        "files": [checkins.name, pois.name],
    }
    return make_log(table, name or checkins.stem, places=coords, attrs=attrs)


@READERS.register("stan-npy")
def _stan(card: DatasetCard, folder: Path) -> EventLog:
    checkins = option_paths(card, folder, "checkins")[0]
    pois = option_paths(card, folder, "pois")[0]
    return read_stan(checkins, pois, str(card.options.get("epoch", STAN_EPOCH)), card.name)


# -------------------------------------------------------------------------------------- TrajGAN
def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    frame = read_table(path, what)
    require_columns(frame, columns, path, what)
    return frame


def _read_columns(
    path: Path,
    columns: tuple[str, ...],
    what: str,
    coords: tuple[str, str],
    limits: tuple[float, float] = (90.0, 180.0),
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A CSV of ``columns``: its integer columns by name, then latitude and longitude checked
    (``limits``: their largest magnitudes)."""
    frame = _read_csv(path, columns, what)
    ints = {c: numbers(frame, c, path, 2, integer=True) for c in columns if c not in coords}
    lat, lon = (numbers(frame, c, path, 2) for c in coords)
    check_coords(lat, lon, path, 2, limits=limits)
    return ints, lat, lon


def _in_range(values: np.ndarray, low: int, high: int, column: str, path: Path) -> None:
    outside = (values < low) | (values > high)
    if outside.any():
        fail_at(path, outside, values, f"column '{column}' outside {low}..{high}", 2)


def read_trajgan(paths: Sequence[str | Path], name: str | None = None) -> EventLog:
    """Read LSTM-TrajGAN's CSVs (``tid,label,lat,lon,day,hour,category``) into one log.

    Each ``tid`` is one user-week (``session``); ``day`` is the weekday (0 = Monday: the
    weekend rows are days 5 and 6) and ``hour`` the local hour; there are no dates. A user's
    trajectories are taken in ``tid`` order (assumed chronological), the k-th placed in week k
    after 1970-01-05, so time = that Monday + ``day`` days + ``hour`` hours (``week_only``).
    A location is an exact (lat, lon) pair; categories are the 10 coarse activity codes. The
    files are the publisher's random split; they are concatenated, to be re-split by time.
    """
    frames, what = [], "LSTM-TrajGAN check-in file"
    for path in map(Path, paths):
        ints, lat, lon = _read_columns(path, TRAJGAN_COLUMNS, what, ("lat", "lon"))
        _in_range(ints["day"], 0, 6, "day", path)
        _in_range(ints["hour"], 0, 23, "hour", path)
        frames.append(pd.DataFrame({**ints, "lat": lat, "lon": lon}).assign(file=path.name))
    data = pd.concat(frames, ignore_index=True)
    shared = data.groupby("tid")["file"].nunique() > 1
    if shared.any():
        raise InputError(
            f"{', '.join(map(str, paths))}: trajectory id {shared.index[shared][0]} appears in "
            "more than one file; each tid must be one user's week."
        )
    users_per_tid = data.groupby("tid")["label"].nunique() > 1
    if users_per_tid.any():
        raise InputError(
            f"{paths[0]}: trajectory id {users_per_tid.index[users_per_tid][0]} "
            "belongs to more than one user (label)."
        )
    week = data.groupby("label")["tid"].rank(method="dense").to_numpy(np.int64) - 1
    table = pd.DataFrame(
        {
            "user": data["label"],
            "time": week_time(week, data["day"], data["hour"] * 60),
            "location": data["lat"].astype(str) + "," + data["lon"].astype(str),
            "category": data["category"],
            "lat": data["lat"],
            "lon": data["lon"],
            "session": data["tid"],
        }
    )
    attrs = {
        "format": "trajgan-csv",
        "clock": "local",
        "dates": "none",
        "coords": "degrees",
        "files": [Path(p).name for p in paths],
        "source_split": data.groupby("file")["tid"].nunique().to_dict(),
    }
    return make_log(table, name or "trajgan", week_only=True, attrs=attrs)


@READERS.register("trajgan-csv")
def _trajgan(card: DatasetCard, folder: Path) -> EventLog:
    return read_trajgan(option_paths(card, folder, "files"), card.name)


# -------------------------------------------------------------------------------------- LLM-Mob
def read_llmmob(paths: Sequence[str | Path], name: str | None = None) -> EventLog:
    """Read LLM-Mob's CSVs (``id,user_id,location_id,latitude,longitude,start_day,start_min,
    weekday``) into one log.

    ``start_day`` counts days from each user's own first day and ``start_min`` is the local
    minute of the day; ``weekday`` (0 = Monday) advances with ``start_day``. Time is placed so
    that weekday and time of day are real: 1970-01-05 (a Monday) + the user's weekday shift +
    ``start_day`` days + ``start_min`` minutes; the dates themselves are not
    (``attrs["dates"] = "relative"``). Coordinates are normalised to [-1, 1]
    (``attrs["coords"] = "normalised"``: radii in km do not apply); a location's coordinates
    are those of its first check-in. No categories. Ties keep the ``id`` order.
    """
    frames, what = [], "LLM-Mob check-in file"
    for path in map(Path, paths):
        coords = ("latitude", "longitude")
        ints, lat, lon = _read_columns(path, LLMMOB_COLUMNS, what, coords, limits=(1.0, 1.0))
        _in_range(ints["start_min"], 0, 1439, "start_min", path)
        _in_range(ints["weekday"], 0, 6, "weekday", path)
        _in_range(ints["start_day"], 0, 1 << 20, "start_day", path)
        frames.append(pd.DataFrame({**ints, "lat": lat, "lon": lon}))
    data = pd.concat(frames, ignore_index=True).sort_values("id", kind="stable")
    shift = (data["weekday"] - data["start_day"]) % 7
    inconsistent = shift.groupby(data["user_id"]).nunique() > 1
    if inconsistent.any():
        raise InputError(
            f"{', '.join(map(str, paths))}: for user {inconsistent.index[inconsistent][0]}, "
            "weekday does not advance with start_day; the files are not LLM-Mob's format."
        )
    table = pd.DataFrame(
        {
            "user": data["user_id"],
            "location": data["location_id"],
            "time": week_time(0, shift + data["start_day"], data["start_min"]),
            "lat": data["lat"],
            "lon": data["lon"],
        }
    )
    attrs = {
        "format": "llmmob-csv",
        "clock": "local",
        "dates": "relative",
        "coords": "normalised",
        "files": [Path(p).name for p in paths],
    }
    return make_log(table, name or "llmmob", attrs=attrs)


@READERS.register("llmmob-csv")
def _llmmob(card: DatasetCard, folder: Path) -> EventLog:
    return read_llmmob(option_paths(card, folder, "files"), card.name)
