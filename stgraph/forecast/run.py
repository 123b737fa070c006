"""Production forecasts: resolve a model in the MLflow registry, read recent history, write one
forecast table safely, and record the call in MLflow.

What one call guarantees:

- **Validation** against the model's training signature (node ids, frequency, enough history,
  missing values judged by the training card's null rule); a failure is an `InputError` and
  nothing is written.
- **Determinism**: the same model, input and ``as_of`` give a byte-identical file (Parquet with a
  fixed schema and no writer-dependent metadata, or CSV).
- **Atomicity**: the bytes go to a temporary file beside the output, are fsynced and renamed over
  it; a reader sees the old file or the new one, never a torn one.
- **One writer per output**: ``PATH.lock`` is held with ``flock`` for the whole call; a second
  call on the same output fails at once with `LockedError` (exit code 75).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stgraph.atomic import atomic_write
from stgraph.errors import InputError, LockedError
from stgraph.forecast.bundle import Forecaster

OUTPUT_COLUMNS = ("as_of", "timestamp", "node", "horizon", "value", "model_uri", "model_version")
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
DEFAULT_EXPERIMENT = "forecast-jobs"
URI_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"


# ----------------------------------------------------------------------------- model resolution
@dataclass
class ResolvedModel:
    """A model URI pinned to what it pointed at when it was resolved."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    forecaster: Forecaster


def _client():
    import mlflow

    from stgraph.tracking.store import tracking_uri

    # Progress bars of artifact downloads would clutter the output of a cron job.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient()


def _version_of(client, uri: str, name: str, ref: str, by_alias: bool):
    """The registry's `ModelVersion` for ``name@ref`` or ``name/ref``, or a clear `InputError`."""
    from mlflow.exceptions import MlflowException

    from stgraph.tracking.store import tracking_uri

    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise InputError(
            f"Model URI '{uri}': no registered model named '{name}' in the MLflow store "
            f"{tracking_uri()} (register one with `stgraph fit ... --register {name}`)."
        ) from None
    try:
        if by_alias:
            return client.get_model_version_by_alias(name, ref)
        if ref == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise InputError(f"Model URI '{uri}': model '{name}' has no versions.")
            return max(versions, key=lambda v: int(v.version))
        return client.get_model_version(name, ref)
    except MlflowException:
        if by_alias:
            aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(registered.aliases.items()))
            raise InputError(
                f"Model URI '{uri}': model '{name}' has no alias '{ref}' (aliases: "
                f"{aliases or 'none'}). Set one with `stgraph models promote {name} VERSION "
                f"{ref}`."
            ) from None
        raise InputError(f"Model URI '{uri}': model '{name}' has no version '{ref}'.") from None


def resolve_model(uri: str) -> ResolvedModel:
    """Pin ``uri`` to one registry version (or run) and load its model bundle.

    The bundle is taken from the *logged model* the URI names (its ``artifacts/model.pt``, found
    through the ``MLmodel`` file): the very files ``mlflow models serve`` loads, wherever the
    model was logged from. An alias is resolved once and the download uses the pinned version, so
    moving the alias mid-call cannot mix two versions. Logged models without the bundle artifact
    fall back to the run's ``checkpoint/model.pt``.

    Raises:
        InputError: a malformed URI, or a model, version, alias or run that does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    client = _client()
    name = version = run_id = None
    if uri.startswith("models:/") and len(uri) > len("models:/"):
        rest = uri[len("models:/") :]
        if "@" in rest:
            name, alias = rest.split("@", 1)
            found = _version_of(client, uri, name, alias, by_alias=True)
        elif "/" in rest:
            name, ref = rest.rsplit("/", 1)
            found = _version_of(client, uri, name, ref, by_alias=False)
        else:
            raise InputError(f"Model URI '{uri}': name a version or an alias ({URI_HELP}).")
        version, run_id = str(found.version), found.run_id
        download_uri = f"models:/{name}/{version}"
    elif uri.startswith("runs:/") and len(uri.split("/")) >= 3:
        run_id = uri.split("/")[1]
        try:
            client.get_run(run_id)
        except MlflowException:
            raise InputError(f"Model URI '{uri}': no run '{run_id}' in the MLflow store.") from None
        download_uri = uri
    else:
        raise InputError(f"Model URI '{uri}' is not one of {URI_HELP}.")
    with tempfile.TemporaryDirectory(prefix="stgraph-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(download_uri, dst_path=tmp))
        except MlflowException as exc:
            raise InputError(f"Model URI '{uri}': cannot download the model ({exc}).") from None
        bundle = _bundle_in(local, Model)
        if bundle is None and run_id:
            try:
                bundle = Path(
                    mlflow.artifacts.download_artifacts(
                        f"runs:/{run_id}/checkpoint/model.pt", dst_path=tmp
                    )
                )
            except MlflowException:
                bundle = None
        if bundle is None:
            raise InputError(
                f"Model URI '{uri}' names no stgraph model (no model bundle in the logged model "
                "or its run's checkpoint/model.pt)."
            )
        forecaster = Forecaster.load(bundle)
    return ResolvedModel(uri, name, version, run_id, forecaster)


def _bundle_in(local: Path, model_class) -> Path | None:
    """The bundle file of a downloaded pyfunc model folder, or None."""
    if local.is_file():
        return local if local.suffix == ".pt" else None
    try:
        flavor = model_class.load(str(local)).flavors.get("python_function", {})
    except Exception:  # not an MLflow model folder
        return None
    entry = (flavor.get("artifacts") or {}).get("bundle") or {}
    path = local / entry["path"] if entry.get("path") else None
    return path if path is not None and path.is_file() else None


def promote(name: str, version: str, alias: str) -> dict[str, Any]:
    """Point registry alias ``alias`` of model ``name`` at ``version``.

    Raises:
        InputError: unknown model or version, or a malformed alias.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    uri = f"models:/{name}/{version}"
    found = _version_of(client, uri, name, str(version), by_alias=False)
    previous = client.get_registered_model(name).aliases.get(alias)
    try:
        client.set_registered_model_alias(name, alias, str(found.version))
    except MlflowException as exc:
        raise InputError(f"Cannot set alias '{alias}' on model '{name}': {exc.message}") from None
    return {
        "name": name,
        "alias": alias,
        "version": str(found.version),
        "previous_version": None if previous is None else str(previous),
        "model_uri": f"models:/{name}@{alias}",
    }


# ----------------------------------------------------------------------------- history
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

    null_value = forecaster.bundle["null_value"]
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


def _as_of(history: History, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
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


# ----------------------------------------------------------------------------- forecast table
def forecast_table(model: ResolvedModel, history: History, as_of=None) -> pd.DataFrame:
    """The forecast after ``as_of`` as the output table (columns `OUTPUT_COLUMNS`).

    Raises:
        InputError: too little history before ``as_of``, or a window without any reading.
    """
    stamp = _as_of(history, as_of)
    forecaster = model.forecaster
    window = history.wide.loc[:stamp].iloc[-forecaster.window :]
    if len(window) == forecaster.window and window.isna().all().all():
        raise InputError(
            f"{history.source}: no observed reading in the {forecaster.window} steps up to "
            f"{stamp}; the model would forecast from nothing."
        )
    table = forecaster.forecast(history.wide, as_of=stamp, source=history.source)
    table.insert(0, "as_of", stamp)
    table["model_uri"] = model.uri
    table["model_version"] = model.version
    return table[list(OUTPUT_COLUMNS)]


def output_format(path: str | Path) -> str:
    """``parquet`` or ``csv`` from the output's extension, or an `InputError`."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"Output {path}: unknown extension; use .parquet (or .pq) or .csv.")
    return fmt


def serialize(table: pd.DataFrame, fmt: str) -> bytes:
    """The file's bytes: a pure function of the table, so reruns give identical files.

    Parquet is written from an explicit Arrow schema without pandas metadata (which would embed
    index and library details); pyarrow writes no clock time or random ids, so the bytes depend
    only on the data and the pyarrow version.
    """
    if fmt == "csv":
        text = table.to_csv(index=False, lineterminator="\n", date_format="%Y-%m-%dT%H:%M:%S%z")
        return text.encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    tz = getattr(table["timestamp"].dt, "tz", None)
    stamp = pa.timestamp("us", tz=None if tz is None else str(tz))
    schema = pa.schema(
        [
            ("as_of", stamp),
            ("timestamp", stamp),
            ("node", pa.string()),
            ("horizon", pa.int32()),
            ("value", pa.float64()),
            ("model_uri", pa.string()),
            ("model_version", pa.string()),
        ]
    )
    arrays = [
        pa.array(table["as_of"].dt.as_unit("us"), type=stamp),
        pa.array(table["timestamp"].dt.as_unit("us"), type=stamp),
        pa.array(table["node"].astype(str).tolist(), type=pa.string()),
        pa.array(table["horizon"].to_numpy(dtype=np.int32), type=pa.int32()),
        pa.array(table["value"].to_numpy(dtype=np.float64), type=pa.float64()),
        pa.array(table["model_uri"].tolist(), type=pa.string()),
        pa.array(table["model_version"].tolist(), type=pa.string()),
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buffer, compression="zstd")
    return buffer.getvalue()


def read_output(path: str | Path) -> pd.DataFrame:
    """Read a forecast file written by `serialize` (Parquet or CSV)."""
    path = Path(path)
    if output_format(path) == "parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype={"node": str, "model_version": str})
    for column in ("as_of", "timestamp"):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


def output_complete(path: Path, expected_rows: int) -> bool:
    """Whether ``path`` holds a readable forecast table with ``expected_rows`` rows."""
    if not path.is_file():
        return False
    try:
        frame = read_output(path)
    except Exception:  # a damaged file is not complete, whatever the reader raises
        return False
    return tuple(frame.columns) == OUTPUT_COLUMNS and len(frame) == expected_rows


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


# ----------------------------------------------------------------------------- one forecast job
def write_forecast(
    model: ResolvedModel,
    history: History,
    output: str | Path,
    as_of=None,
    experiment: str = DEFAULT_EXPERIMENT,
    job: str | None = None,
) -> dict[str, Any]:
    """Forecast, write ``output`` atomically under its lock, and log the call to MLflow.

    Returns:
        A summary: output path, rows, as_of, model version, sha256s and the MLflow run id.
    """
    started = time.perf_counter()
    path = Path(output).expanduser().absolute()
    output_format(path)
    with output_lock(path):
        return _write_locked(model, history, path, as_of, experiment, job, started)


def _write_locked(
    model: ResolvedModel,
    history: History,
    path: Path,
    as_of,
    experiment: str,
    job: str | None,
    started: float,
) -> dict[str, Any]:
    table = forecast_table(model, history, as_of)
    data = serialize(table, output_format(path))
    write_atomic(path, data)
    stamp = table["as_of"].iat[0]
    summary = {
        "output": str(path),
        "rows": len(table),
        "as_of": str(stamp),
        "model_uri": model.uri,
        "model_version": model.version,
        "model_run_id": model.run_id,
        "input": history.source,
        "input_sha256": history.sha256,
        "output_sha256": hashlib.sha256(data).hexdigest(),
    }
    window = history.wide.loc[:stamp].iloc[-model.forecaster.window :]
    # Logged while the lock is still held: a job counts as done once its run is recorded.
    summary["run_id"] = _log_run(
        experiment,
        job,
        summary,
        metrics={
            "input_rows": history.rows,
            "input_nodes": history.wide.shape[1],
            "output_rows": len(table),
            "window_observed_fraction": float(window.notna().to_numpy().mean()),
            "duration_seconds": time.perf_counter() - started,
        },
    )
    return summary


def _log_run(
    experiment: str, job: str | None, summary: dict[str, Any], metrics: dict[str, float]
) -> str:
    """One FINISHED MLflow run per forecast call, logged after the output is in place."""
    import mlflow

    from stgraph import __version__
    from stgraph.tracking.tracker import Tracker

    name = f"{job or 'forecast'} {summary['as_of']}"
    with Tracker(experiment, name) as tracker:
        params = {k: "" if v is None else str(v) for k, v in summary.items()}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"stgraph.version": __version__, "stgraph.kind": "forecast"})
        if job:
            mlflow.set_tag("stgraph.job", job)
    return str(tracker.run_id)


def forecast_command(
    model_uri: str,
    output: str,
    input_file: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    """``stgraph forecast``: resolve, read, validate, forecast, write, log."""
    started = time.perf_counter()
    path = Path(output).expanduser().absolute()
    output_format(path)  # a bad extension fails before any work
    with output_lock(path):  # held from the start so that two calls never duplicate work
        model = resolve_model(model_uri)
        history = load_history(model.forecaster, input_file, dataset, data_dir)
        return _write_locked(model, history, path, as_of, DEFAULT_EXPERIMENT, None, started)
