"""Daily stock prices into a trading-calendar `Series` (formats ``price-folder``, ``price-long``).

Layouts:
    price-folder: one CSV per ticker in ``options.folder`` (the ticker is the file name:
        StockNet's ``price/raw/AAPL.csv``, KDD17's ``price_long_50/AAPL.csv``).
    price-long: one CSV or Parquet table ``date,ticker,open,high,low,close,volume[,adj_close]``
        in ``options.file`` (any column-name case).
Column, date and number rules are in `stgraph.data.adapters.price_files`.

The series: nodes are the tickers (sorted), channels ``close, open, high, low, volume`` (close
first: ``channels[0]`` is the target), timestamps the union of the tickers' trading days, so the
calendar is the data's own (``attrs["calendar"] == "trading"``; no weekend or holiday rows).
A ticker's day absent from its file (not yet listed, suspended) or with an empty cell is masked,
never forward-filled: a carried price would read as a zero return that did not happen.

Adjustment (``options.adjust``, default true): where a file has ``Adj Close``, open, high, low and
close are multiplied by ``adj_close / close`` of the same day, so that returns span splits and
dividends; volume stays as traded. The adjusted close then equals ``Adj Close``, so that column is
not kept as a channel. A day whose Adj Close is empty while others of the ticker have one cannot
be adjusted: its prices are masked. With ``adjust: false`` prices stay raw and ``adj_close`` is a
sixth channel (when any file has it). Files without ``Adj Close`` (or with it empty throughout)
are taken as they are.

Checks: a price <= 0 or a negative volume is an `InputError` naming the file and date; with
``options.nonpositive: mask`` such a price cell is masked instead (KDD17's PTR has a 0 on a day
without trades). A volume of 0 is a real reading. Optional ``options.trading_dates`` (a one-column
list of days) must equal the union calendar. Optional ``options.sectors`` (StockNet's
``StockTable``, or a JSON of sector -> tickers) gives ``attrs["sectors"]``, a ``ticker -> sector``
dict over the panel's tickers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.data.adapters.base import ADAPTERS, RawDataset
from stgraph.data.adapters.price_files import (
    PRICE_FIELDS,
    by_date,
    header_fields,
    read_price_file,
    read_sectors,
    read_table,
    read_trading_dates,
    tidy_prices,
)
from stgraph.data.cards import DatasetCard
from stgraph.data.series import Series
from stgraph.errors import InputError

CHANNELS = ("close", "open", "high", "low", "volume")
NONPOSITIVE = ("error", "mask")


def _checked(frame: pd.DataFrame, path: Path, nonpositive: str) -> pd.DataFrame:
    """``frame`` with bad prices raised on (or masked, as NaN) and negative volume raised on."""
    frame = frame.copy()
    for field in [f for f in PRICE_FIELDS if f in frame.columns]:
        bad = (frame[field] <= 0).to_numpy()  # NaN compares False: missing is not bad
        if bad.any() and nonpositive == "error":
            day = frame.index[bad][0].date()
            raise InputError(
                f"{path}: non-positive {field} {frame[field][bad].iloc[0]} on {day} "
                f"({int(bad.sum())} such cell(s)). Prices must be > 0; fix the file, or set "
                "options.nonpositive: mask in the card to mask them."
            )
        frame.loc[bad, field] = np.nan
    if "volume" in frame.columns and (frame["volume"] < 0).any():
        day = frame.index[(frame["volume"] < 0).to_numpy()][0].date()
        raise InputError(f"{path}: negative volume on {day}.")
    return frame


def _adjusted(frame: pd.DataFrame) -> pd.DataFrame:
    """Open/high/low/close scaled by ``adj_close / close`` (NaN where either is missing)."""
    factor = frame["adj_close"] / frame["close"]
    out = frame.drop(columns=["adj_close"])
    for field in [f for f in ("open", "high", "low", "close") if f in out.columns]:
        out[field] = out[field] * factor
    return out


def build_price_series(
    frames: dict[str, pd.DataFrame],
    sources: dict[str, Path],
    name: str,
    adjust: bool = True,
    nonpositive: str = "error",
    trading_dates: pd.DatetimeIndex | None = None,
    dates_path: Path | None = None,
    attrs: dict | None = None,
) -> Series:
    """A trading-calendar `Series` from per-ticker frames indexed by increasing trading day.

    Args:
        frames: ticker -> frame with ``close`` and any of the other price fields (float, NaN
            for a missing cell), as `read_price_file` returns.
        sources: ticker -> file, for error messages.
        trading_dates: if given, must equal the union of the tickers' days.
    """
    if nonpositive not in NONPOSITIVE:
        raise InputError(f"{name}: options.nonpositive must be one of {NONPOSITIVE}.")
    tickers = sorted(frames)
    frames = {t: _checked(frames[t], sources[t], nonpositive) for t in tickers}
    # An all-empty adj_close (a long table's column for a ticker without one) counts as absent.
    frames = {
        t: f.drop(columns="adj_close") if "adj_close" in f and f["adj_close"].isna().all() else f
        for t, f in frames.items()
    }
    has_adj = any("adj_close" in f.columns for f in frames.values())
    if adjust:
        frames = {t: _adjusted(f) if "adj_close" in f.columns else f for t, f in frames.items()}
    channels = CHANNELS + (("adj_close",) if has_adj and not adjust else ())
    days = pd.DatetimeIndex(np.unique(np.concatenate([f.index.values for f in frames.values()])))
    if trading_dates is not None and not days.equals(trading_dates):
        extra = days.difference(trading_dates)
        lacking = trading_dates.difference(days)
        raise InputError(
            f"{dates_path}: the trading dates disagree with the price files: {len(extra)} day(s) "
            f"only in the files (first {extra[0].date() if len(extra) else '-'}), {len(lacking)} "
            f"only in the list (first {lacking[0].date() if len(lacking) else '-'})."
        )
    raw = np.stack(
        [
            frames[t].reindex(index=days, columns=list(channels)).to_numpy(np.float64)
            for t in tickers
        ],
        axis=1,
    )  # [T, N, F], NaN for absent days and cells; never filled
    mask = np.isfinite(raw)
    values = np.where(mask, raw, 0.0).astype(np.float32)
    info = {
        "calendar": "trading",
        "units": "USD (volume: shares)",
        "adjusted": bool(adjust and has_adj),
        "source": str(Path(next(iter(sources.values()))).parent) if sources else "",
        "inserted_steps": 0,
        **(attrs or {}),
    }
    return Series(
        values=values,
        mask=mask,
        timestamps=days,
        node_ids=tuple(tickers),
        channels=channels,
        name=name,
        attrs=info,
    )


def _options(card: DatasetCard, data_dir: Path) -> dict:
    options = card.options
    data_dir = Path(data_dir)
    out = {
        "adjust": bool(options.get("adjust", True)),
        "nonpositive": str(options.get("nonpositive", "error")),
        "trading_dates": None,
        "dates_path": None,
        "sectors": None,
    }
    if options.get("trading_dates"):
        out["dates_path"] = data_dir / options["trading_dates"]
        out["trading_dates"] = read_trading_dates(out["dates_path"])
    if options.get("sectors") and (data_dir / options["sectors"]).exists():
        out["sectors"] = read_sectors(data_dir / options["sectors"])
    return out


def _finish(
    card: DatasetCard, frames: dict, sources: dict, options: dict, source: Path
) -> RawDataset:
    sectors = options.pop("sectors")
    attrs = {} if sectors is None else {"sectors": {t: sectors[t] for t in frames if t in sectors}}
    attrs["source"] = str(source)  # the long table, or the folder of ticker files
    series = build_price_series(frames, sources, card.name, attrs=attrs, **options)
    return RawDataset(series=series, card=card)


@ADAPTERS.register("price-folder")
def load_price_folder(card: DatasetCard, data_dir: Path) -> RawDataset:
    """One CSV per ticker in ``options.folder`` (default: ``data_dir`` itself)."""
    folder = Path(data_dir) / card.options.get("folder", ".")
    if not folder.is_dir():
        raise InputError(f"Price folder {folder} does not exist (card {card.path or card.name}).")
    paths = sorted(folder.glob(card.options.get("pattern", "*.csv")))
    if not paths:
        raise InputError(f"Price folder {folder} holds no *.csv ticker files.")
    options = _options(card, data_dir)
    frames = {p.stem: read_price_file(p) for p in paths}
    return _finish(card, frames, {p.stem: p for p in paths}, options, folder)


def read_long_prices(path: Path) -> dict[str, pd.DataFrame]:
    """ticker -> frame by trading day, from one long table with a ticker column."""
    return long_price_frames(read_table(path, "price table"), path)


def long_price_frames(frame: pd.DataFrame, path: Path | str) -> dict[str, pd.DataFrame]:
    """ticker -> frame by trading day, from a long table already read (``path`` names it in
    messages)."""
    tidy = tidy_prices(frame, path)
    if "ticker" not in tidy.columns:
        raise InputError(f"{path}: a long price table needs a ticker (or symbol) column.")
    return {
        str(ticker): by_date(group.drop(columns=["ticker"]), path, f" for ticker {ticker}")
        for ticker, group in tidy.groupby("ticker", sort=True)
    }


@ADAPTERS.register("price-long")
def load_price_long(card: DatasetCard, data_dir: Path) -> RawDataset:
    """One long CSV/Parquet table ``date,ticker,open,high,low,close,volume[,adj_close]``."""
    if not card.options.get("file"):
        raise InputError(f"Card {card.path or card.name}: a price-long card needs options.file.")
    path = Path(data_dir) / card.options["file"]
    options = _options(card, data_dir)
    frames = read_long_prices(path)
    return _finish(card, frames, dict.fromkeys(frames, path), options, path)


def is_price_table(path: Path) -> bool:
    """Whether a CSV/Parquet file's header has a ticker (or symbol) column and a close column."""
    fields = header_fields(Path(path))
    return "ticker" in fields and "close" in fields


def _user_card(name: str, format: str, options: dict) -> DatasetCard:
    """An in-memory card for a user's prices (no expected counts, no files to download)."""
    return DatasetCard(
        name=name,
        format=format,
        files=(),
        domain="finance",
        target="close",
        null_value="nan",
        options=options,
    )


def open_price_table(path: str | Path, adjust: bool = True) -> RawDataset:
    """A user's long price table (``date,ticker,open,high,low,close,volume[,adj_close]``), as a
    trading-calendar series."""
    path = Path(path).expanduser().resolve()
    card = _user_card(path.stem, "price-long", {"file": str(path), "adjust": adjust})
    return load_price_long(card, path.parent)


def is_price_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of per-ticker CSV files, any of them with a close column
    (the reader then names a file that lacks one, whichever it is)."""
    path = Path(path)
    return path.is_dir() and any("close" in header_fields(p) for p in path.glob("*.csv"))


def open_price_folder(path: str | Path, adjust: bool = True) -> RawDataset:
    """A user's folder of per-ticker CSV files (the ticker is the file name), as `load_price_folder`
    reads a card's."""
    path = Path(path).expanduser().resolve()
    return load_price_folder(_user_card(path.name, "price-folder", {"adjust": adjust}), path)
