"""Production predictions, for every task: resolve a model in the MLflow registry, read recent
data, write one prediction table safely, and record the call in MLflow.

What one call guarantees:

- **Validation** against the model's training signature (for a forecast model: node ids,
  frequency, enough history, missing values judged by the training card's null rule); a failure
  is an `InputError` and nothing is written.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from stgraph.serving.bookkeeper import log_run
from stgraph.serving.output import output_format, output_lock, serialize, write_atomic
from stgraph.serving.registry import ResolvedModel

DEFAULT_EXPERIMENT = "forecast-jobs"


def prediction_table(model: ResolvedModel, data: Any, as_of=None) -> pd.DataFrame:
    """The predictor's table made at ``as_of``, stamped with the model it came from."""
    table = model.predictor.predict(data, as_of)
    table["model_uri"] = model.uri
    table["model_version"] = model.version
    return table


# ----------------------------------------------------------------------------- one forecast job
def write_forecast(
    model: ResolvedModel,
    data: Any,
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
        return write_locked(model, data, path, as_of, experiment, job, started)


def write_locked(
    model: ResolvedModel,
    data: Any,
    path: Path,
    as_of,
    experiment: str,
    job: str | None,
    started: float,
    record: Callable[[str, str | None, dict, dict], str] | None = None,
) -> dict[str, Any]:
    table = prediction_table(model, data, as_of)
    payload = serialize(table, output_format(path))
    write_atomic(path, payload)
    stamp = table["as_of"].iat[0]
    described = model.predictor.describe_input(data, stamp)
    summary = {
        "output": str(path),
        "rows": len(table),
        "as_of": str(stamp),
        "model_uri": model.uri,
        "model_version": model.version,
        "model_run_id": model.run_id,
        "input": described["source"],
        "input_sha256": described["sha256"],
        "output_sha256": hashlib.sha256(payload).hexdigest(),
    }
    metrics = {
        **described.get("metrics", {}),
        "output_rows": len(table),
        "duration_seconds": time.perf_counter() - started,
    }
    # Logged while the lock is still held: a job counts as done once its run is recorded.
    summary["run_id"] = (record or log_run)(experiment, job, summary, metrics)
    return summary
