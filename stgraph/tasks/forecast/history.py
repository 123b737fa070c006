"""Recent history for a served forecast model, read and checked against its training signature."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from stgraph.errors import InputError


class Forecaster(Protocol):
    """What the history checks read of a served model (`predictor.Forecaster`)."""

    node_ids: list[str]
    freq: pd.Timedelta
    null_value: str


@dataclass
class History:
    """Recent history on the model's regular grid: NaN marks a missing reading."""

    wide: pd.DataFrame  # index: timestamps, columns: the model's node ids in training order
    source: str  # the file path or ``dataset:NAME``
    sha256: str  # of the input file's bytes (of the arrays for a dataset)
    rows: int  # timestamps read from the input (before gaps were filled)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_history(
    forecaster: Forecaster,
    input_file: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
) -> History:
    """Read a wide or long CSV/Parquet file, or a dataset's series, and check it against the model.

    Missing readings follow the training card's null rule (``zero``: 0 is missing, ``nan``: NaN
    is missing, ``none``: a NaN is an error); timestamps absent from the model's grid become
    missing rows, as in training.

    Raises:
        InputError: unreadable input, node ids that differ from the model's, or a sampling
            interval other than the model's.
    """
    from stgraph.data.adapters.base import observed_mask
    from stgraph.data.adapters.tabular import read_values
    from stgraph.data.cards import DatasetCard

    null_value = forecaster.null_value
    if input_file is not None:
        path = Path(input_file).expanduser().resolve()
        probe = DatasetCard(
            name=path.stem, format="tabular", files=(), frequency="", null_value=null_value
        )
        raw, times, node_ids, present = read_values(path, probe)
        if present is not None:
            raw = np.where(present, raw, 1.0)  # stand-in for absent cells; masked just below
        observed = observed_mask(raw, null_value, str(path), allow_nonfinite=False)
        if present is not None:
            observed &= present
        wide = pd.DataFrame(np.where(observed, raw, np.nan), index=times, columns=node_ids)
        source, sha256 = str(path), _sha256_file(path)
    elif dataset is not None:
        from stgraph.data.sources import open_dataset

        series = open_dataset(dataset, data_dir=data_dir).series
        values = np.where(series.mask[:, :, 0], series.values[:, :, 0], np.nan).astype(np.float64)
        wide = pd.DataFrame(values, index=series.timestamps, columns=list(series.node_ids))
        digest = hashlib.sha256(values.tobytes())
        digest.update(np.asarray(series.timestamps.asi8).tobytes())
        digest.update("\0".join(series.node_ids).encode())
        source, sha256 = f"dataset:{dataset}", digest.hexdigest()
    else:
        raise InputError("Give the history with --input FILE or --dataset NAME.")
    rows = len(wide)
    _check_nodes(wide, forecaster, source)
    wide = _on_model_grid(wide, forecaster, source)
    return History(wide[forecaster.node_ids], source, sha256, rows)


def _check_nodes(wide: pd.DataFrame, forecaster: Forecaster, source: str) -> None:
    columns = [str(c) for c in wide.columns]
    known = set(forecaster.node_ids)
    missing = [n for n in forecaster.node_ids if n not in set(columns)]
    extra = [c for c in columns if c not in known]
    if missing or extra:
        raise InputError(
            f"{source}: node ids differ from the model's training data ({len(missing)} missing, "
            f"e.g. {missing[:3]}; {len(extra)} unknown, e.g. {extra[:3]}). The model forecasts "
            f"exactly the {len(forecaster.node_ids)} nodes it was trained on."
        )


def _on_model_grid(wide: pd.DataFrame, forecaster: Forecaster, source: str) -> pd.DataFrame:
    """Reindex onto the model's regular grid; refuse another sampling interval."""
    # Nanosecond stamps: `Forecaster` compares raw int64 steps with its frequency in ns.
    index = pd.DatetimeIndex(wide.index).as_unit("ns")
    wide = wide.set_axis(index)
    if len(index) < 2:
        return wide
    freq = forecaster.freq
    steps = pd.to_timedelta(np.diff(index.as_unit("ns").asi8), unit="ns")
    off_grid = steps % freq != pd.Timedelta(0)
    if steps.min() != freq or off_grid.any():
        found = pd.Series(steps).mode().iloc[0]
        raise InputError(
            f"{source}: readings are {found} apart (smallest step {steps.min()}), but the model "
            f"was trained on {freq} data. Resample the input to {freq}."
        )
    grid = pd.date_range(index[0], index[-1], freq=freq).as_unit("ns")
    return wide.reindex(grid)


def parse_timestamp(value: str | pd.Timestamp, history: History, what: str) -> pd.Timestamp:
    """``value`` as a timestamp comparable with the input's index: a naive one takes the input's
    time zone; a zoned one against a naive input is an error (``what`` names the option)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"{what} '{value}' is not a timestamp.") from None
    tz = pd.DatetimeIndex(history.wide.index).tz
    if stamp.tz is not None and tz is None:
        raise InputError(f"{what} {value} has a time zone; the input's timestamps do not.")
    if stamp.tz is None and tz is not None:
        stamp = stamp.tz_localize(tz)
    return stamp


def resolve_as_of(history: History, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
    index = pd.DatetimeIndex(history.wide.index)
    last = index[-1]
    if as_of is None:
        return last
    stamp = parse_timestamp(as_of, history, "--as-of")
    if stamp > last:
        raise InputError(f"{history.source} ends at {last}: no readings up to --as-of {stamp} yet.")
    if stamp >= index[0] and stamp not in index:
        raise InputError(
            f"--as-of {stamp} is not on the model's {index.freq or ''} grid of {history.source} "
            f"(it starts at {index[0]})."
        )
    return stamp
