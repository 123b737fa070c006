"""Prediction tables on disk: a deterministic format, atomic writes and one writer per output."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from stgraph.atomic import atomic_write
from stgraph.errors import InputError, LockedError

# Every prediction table has these (`Predictor`); a task adds its own columns between them.
REQUIRED_COLUMNS = ("as_of", "horizon", "model_uri", "model_version")
TIME_COLUMNS = ("as_of", "timestamp")
# Identifiers stay text in CSV even when they look like numbers (version "3", sensor 400001).
TEXT_COLUMNS = ("model_uri", "model_version")
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_format(path: str | Path) -> str:
    """``parquet`` or ``csv`` from the output's extension, or an `InputError`."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"Output {path}: unknown extension; use .parquet (or .pq) or .csv.")
    return fmt


def serialize(table: pd.DataFrame, fmt: str) -> bytes:
    """The file's bytes: a pure function of the table, so reruns give identical files.

    Parquet is written from an Arrow schema fixed by the columns' kinds (times in microseconds,
    integers as int64, floats as float64, everything else as strings) without pandas metadata
    (which would embed index and library details); pyarrow writes no clock time or random ids,
    so the bytes depend only on the data and the pyarrow version.
    """
    if fmt == "csv":
        text = table.to_csv(index=False, lineterminator="\n", date_format="%Y-%m-%dT%H:%M:%S%z")
        return text.encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields, arrays = [], []
    for name in table.columns:
        column = table[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            tz = getattr(column.dt, "tz", None)
            kind = pa.timestamp("us", tz=None if tz is None else str(tz))
            values = column.dt.as_unit("us")
        elif pd.api.types.is_bool_dtype(column):
            kind, values = pa.bool_(), column.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(column):
            kind, values = pa.int64(), column.to_numpy(dtype=np.int64)
        elif pd.api.types.is_float_dtype(column):
            kind, values = pa.float64(), column.to_numpy(dtype=np.float64)
        else:
            kind = pa.string()
            values = [None if v is None else str(v) for v in column.tolist()]
        fields.append((str(name), kind))
        arrays.append(pa.array(values, type=kind))
    buffer = io.BytesIO()
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def read_output(path: str | Path, id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a prediction file written by `serialize` (Parquet or CSV); ``id_columns`` (the
    predictor's) stay text in CSV."""
    path = Path(path)
    if output_format(path) == "parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        if column in TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], format="ISO8601")
        elif column not in TEXT_COLUMNS + tuple(id_columns):
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == (frame[column] != "").sum():
                frame[column] = converted
    return frame


def output_complete(path: Path, expected_rows: int, id_columns: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` holds a readable prediction table with ``expected_rows`` rows."""
    if not path.is_file():
        return False
    try:
        frame = read_output(path, id_columns)
    except Exception:  # a damaged file is not complete, whatever the reader raises
        return False
    return set(REQUIRED_COLUMNS) <= set(frame.columns) and len(frame) == expected_rows


# ----------------------------------------------------------------------------- safe writing
def _emit(handle, data: bytes) -> None:
    """Write the bytes (a seam the tests use to stop a writer half-way)."""
    handle.write(data)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see `stgraph.atomic`)."""
    atomic_write(path, lambda handle: _emit(handle, data))


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[Path]:
    """Hold ``PATH.lock`` (``flock``, non-blocking) while writing ``path``.

    The lock file is removed on release. A process that opened it just before the removal could
    lock a deleted file, so after locking we check that the path still names the same file.

    Raises:
        LockedError: another process holds the lock.
    """
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockedError(
                f"{lock} is held by another forecast job (pid {holder}) writing {path}; this "
                "call stopped without writing. Retry once that job has finished."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - needs a pathological race
        raise LockedError(f"{lock}: could not take the lock (it keeps being replaced).")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _remove_stale_temporaries(path)
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of a writer that was killed (we hold the lock: nobody else writes)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
