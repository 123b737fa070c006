"""Reading daily price tables: column names, dates and numbers, each checked against the file.

Column names are matched without regard to case, spaces or underscores (``Adj Close``,
``adj_close`` and ``ADJCLOSE`` are one column). Columns that are not price fields are ignored,
and so are unnamed columns, except a first unnamed non-empty column, which is read as the date
index (a table written by ``DataFrame.to_csv`` with a date index).

KDD17 quirk: 11 of its files carry ``Original_Open`` next to an ``Open`` that its releaser
split-adjusted while High, Low and Close stayed raw. ``Original_Open`` is then the open consistent
with the other raw prices, so it is read as ``open`` and the split-adjusted ``Open`` is dropped.

Dates may mix formats (``12/30/2016`` and ``2016-12-30``; slashes read month first, the US
convention of the sources). Time-zone-aware stamps (``2013-01-02 16:00:00-05:00``) keep their
exchange-local wall time; the trading day is that local date, whatever the offset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.tabular import check_file, read_table
from stgraph.errors import InputError

PRICE_FIELDS = ("open", "high", "low", "close", "adj_close")
FIELDS = (*PRICE_FIELDS, "volume")
_FIELD_KEYS = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "adjclose": "adj_close",
    "adjustedclose": "adj_close",
    "originalopen": "original_open",
    "date": "date",
    "timestamp": "date",
    "datetime": "date",
    "time": "date",
    "ticker": "ticker",
    "symbol": "ticker",
}
_MISSING_TEXT = ("", "null", "nan", "na", "n/a", "none", "-")
# A UTC offset after a clock time: dropped so that the local wall time (and date) is kept.
_OFFSET = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:[+-]\d{2}:?\d{2}|Z|UTC)$")


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def normalise_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` with price columns renamed to `FIELDS` (+ ``date``, ``ticker``), others dropped."""
    rename: dict[object, str] = {}
    for i, column in enumerate(frame.columns):
        name = str(column)
        if name.startswith("Unnamed:") or not name.strip():
            if i == 0 and frame[column].notna().any():
                rename[column] = "date"
            continue  # an empty or stray unnamed column carries no price field
        field = _FIELD_KEYS.get(_key(name))
        if field is None:
            continue
        if field in rename.values():
            raise InputError(f"{path}: two columns read as '{field}' (the second is '{name}').")
        rename[column] = field
    out = frame[list(rename)].rename(columns=rename)
    if "original_open" in out.columns:
        out = out.drop(columns=["open"], errors="ignore").rename(columns={"original_open": "open"})
    found = ", ".join(str(c) for c in frame.columns)
    if "date" not in out.columns:
        raise InputError(
            f"{path}: no date column (expected Date, Timestamp or a first unnamed index column); "
            f"found columns {found}."
        )
    if "close" not in out.columns:
        raise InputError(
            f"{path}: no close column (expected Close; Adj Close alone is not enough); found "
            f"columns {found}."
        )
    return out


def parse_dates(column: pd.Series, path: Path, row_offset: int = 2) -> pd.DatetimeIndex:
    """Trading days (midnight, time-zone naive) from a column of dates or date-times."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        stamps = column.dt.tz_localize(None)  # local wall time of the exchange
    elif pd.api.types.is_datetime64_any_dtype(column):
        stamps = column
    else:
        text = column.astype("string").str.strip().str.replace(_OFFSET, r"\1", regex=True)
        stamps = pd.to_datetime(text, format="mixed", errors="coerce")
    bad = np.flatnonzero(pd.isna(stamps).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise InputError(
            f"{path}: unparseable or missing date '{column.iloc[row]}' at line {row + row_offset} "
            f"({bad.size} such row(s)). Use ISO dates (2016-12-30) or month/day/year."
        )
    return pd.DatetimeIndex(stamps).normalize().as_unit("ns")


def numeric_column(column: pd.Series, path: Path, name: str, row_offset: int = 2) -> np.ndarray:
    """``column`` as float64, NaN for missing cells (empty, ``null``); other text is an error."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)
    text = column.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & text.notna() & ~text.str.lower().isin(_MISSING_TEXT)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy(dtype=bool))[0])
        raise InputError(
            f"{path}: non-numeric {name} '{column.iloc[row]}' at line {row + row_offset}."
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def tidy_prices(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Columns ``date`` (trading day), optional ``ticker`` and the `FIELDS` present, as floats.

    Rows keep the file's order; the caller sorts and checks for duplicates.
    """
    frame = normalise_columns(frame, path)
    out = pd.DataFrame({"date": parse_dates(frame["date"], path)})
    if "ticker" in frame.columns:
        tickers = frame["ticker"].astype("string").str.strip().str.lstrip("$")
        if tickers.isna().any() or (tickers == "").any():
            row = int(np.flatnonzero((tickers.isna() | (tickers == "")).to_numpy(bool))[0])
            raise InputError(f"{path}: missing ticker at line {row + 2}.")
        out["ticker"] = tickers.to_numpy(dtype=object)
    for field in FIELDS:
        if field in frame.columns:
            out[field] = numeric_column(frame[field], path, field)
    return out


def read_price_file(path: Path) -> pd.DataFrame:
    """One ticker's file: indexed by trading day (increasing), `FIELDS` present as float64."""
    tidy = tidy_prices(read_table(path, "price file"), path)
    if "ticker" in tidy.columns:
        tidy = tidy.drop(columns=["ticker"])
    return by_date(tidy, path)


def by_date(tidy: pd.DataFrame, path: Path, what: str = "") -> pd.DataFrame:
    """``tidy`` indexed by its dates in increasing order; `InputError` on a repeated date."""
    dates = pd.DatetimeIndex(tidy["date"])
    repeated = dates.duplicated()
    if repeated.any():
        raise InputError(
            f"{path}: duplicate date {dates[repeated][0].date()}{what} "
            f"({int(repeated.sum())} repeated row(s)); each trading day must appear once."
        )
    return tidy.drop(columns=["date"]).set_axis(dates, axis=0).sort_index()


def read_trading_dates(path: Path) -> pd.DatetimeIndex:
    """A one-column list of trading days (KDD17's ``trading_dates.csv``, no header)."""
    frame = read_table(path, "trading dates file", header=None)
    dates = parse_dates(frame.iloc[:, 0], path, row_offset=1)
    if not dates.is_unique:
        raise InputError(f"{path}: duplicate trading date {dates[dates.duplicated()][0].date()}.")
    return dates.sort_values()


def read_sectors(path: Path) -> dict[str, str]:
    """``ticker -> sector`` from a JSON of sector -> tickers, or a table with sector and ticker.

    Tables (StockNet's tab-separated ``StockTable``) need a ``Sector`` or ``Industry`` column and a
    ``Symbol`` or ``Ticker`` column; a leading ``$`` (``$AAPL``) is dropped. Sector names are kept
    as the source spells them.
    """
    check_file(path, "sector file")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"Sector file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise InputError(f"Sector file {path}: expected a JSON object of sector -> [tickers].")
        pairs = [(str(t).strip().lstrip("$"), str(s)) for s, ts in data.items() for t in ts]
    else:
        try:
            frame = pd.read_csv(path, sep=None, engine="python", dtype=str)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"Sector file {path} is not a readable table: {exc}") from None
        keys = {_key(c): c for c in frame.columns}
        sector = keys.get("sector", keys.get("industry"))
        ticker = keys.get("symbol", keys.get("ticker"))
        if sector is None or ticker is None:
            raise InputError(
                f"Sector file {path}: needs a Sector (or Industry) and a Symbol (or Ticker) "
                f"column; found {', '.join(frame.columns)}."
            )
        rows = frame[[ticker, sector]].dropna()
        pairs = list(zip(rows[ticker].str.strip().str.lstrip("$"), rows[sector].str.strip()))
    sectors: dict[str, str] = {}
    for ticker_id, name in pairs:
        if sectors.setdefault(ticker_id, name) != name:
            raise InputError(
                f"Sector file {path}: ticker {ticker_id} is in two sectors "
                f"({sectors[ticker_id]}, {name})."
            )
    return sectors


def header_fields(path: Path) -> set[str]:
    """The price fields named in a CSV or Parquet file's header (empty if it cannot be read)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            with open(path, encoding="utf-8", errors="replace") as handle:
                names = handle.readline().split(",")
    except (OSError, ValueError):
        return set()
    return {_FIELD_KEYS[k] for k in map(_key, names) if k in _FIELD_KEYS}
