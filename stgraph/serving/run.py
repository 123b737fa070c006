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

import hashlib
import time
from pathlib import Path
from typing import Any

import pandas as pd

from stgraph.errors import InputError
from stgraph.serving.history import History, load_history, resolve_as_of
from stgraph.serving.output import (
    OUTPUT_COLUMNS,
    output_format,
    output_lock,
    serialize,
    write_atomic,
)
from stgraph.serving.registry import ResolvedModel, resolve_model

DEFAULT_EXPERIMENT = "forecast-jobs"


# ----------------------------------------------------------------------------- forecast table
def forecast_table(model: ResolvedModel, history: History, as_of=None) -> pd.DataFrame:
    """The forecast after ``as_of`` as the output table (columns `OUTPUT_COLUMNS`).

    Raises:
        InputError: too little history before ``as_of``, or a window without any reading.
    """
    stamp = resolve_as_of(history, as_of)
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
    """One FINISHED MLflow run per forecast call, logged after the output is in place.

    Created, logged and ended in three transactions (`record_run`), not through the fluent API
    whose run-context plugins import GitPython and run git on every call.
    """
    from stgraph import __version__
    from stgraph.tracking.tracker import record_run

    tags = {"stgraph.version": __version__, "stgraph.kind": "forecast"}
    if job:
        tags["stgraph.job"] = job
    return record_run(
        experiment,
        f"{job or 'forecast'} {summary['as_of']}",
        params={k: "" if v is None else str(v) for k, v in summary.items()},
        metrics=metrics,
        tags=tags,
    )


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
