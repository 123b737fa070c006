"""Scheduled prediction jobs, for every task: one YAML file says which model predicts from which
input, where the tables go and how often.

A job file (``pipelines/jobs/NAME.yaml``, or any path)::

    model_uri: models:/simulator-stid@prod   # what `stgraph forecast` takes
    input: readings.parquet                  # or  dataset: simulator  (+ data_dir)
    output: sim/{as_of}.parquet              # one file per tick; {as_of:%Y%m%d%H%M} also works
    frequency: 5min                          # the tick interval of run / backfill

A relative ``output`` is taken from the forecasts folder, `forecasts_dir` (``$STGRAPH_HOME/
forecasts``, ``~/.local/share/stgraph/forecasts`` on Linux), never from the current directory, so
that a job run from a source checkout or a home folder writes nothing there; an absolute one is
used as it is. Relative ``input`` and ``data_dir`` are read from the current directory, like every
other input path on the command line. ``{as_of}`` expands to ``20240128T2355`` style (seconds are
added when not zero).

``run`` forecasts one tick, ``backfill`` every tick of a range (ticks whose output is already
complete are skipped, so an interrupted backfill resumes where it stopped), ``score`` compares the
past forecasts with the actuals that have arrived since and logs the realised MAE per horizon.
"""

from __future__ import annotations

import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stgraph.config import from_dict, option, read_yaml_mapping
from stgraph.errors import InputError, LockedError
from stgraph.serving.output import output_complete, output_format, read_output
from stgraph.serving.registry import ResolvedModel, resolve_model
from stgraph.serving.run import DEFAULT_EXPERIMENT, write_forecast


@dataclass
class JobSpec:
    """One forecast job, as written in its YAML file."""

    model_uri: str = option("", "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    input: str | None = option(None, "history file (wide or long CSV/Parquet)")
    dataset: str | None = option(None, "or a dataset card name")
    data_dir: str | None = option(None, "folder of the dataset's files")
    output: str = option("", "output path pattern with {as_of}, ending .parquet or .csv")
    frequency: str = option("", "tick interval, e.g. 5min")
    experiment: str = option(DEFAULT_EXPERIMENT, "MLflow experiment of the job's runs")
    name: str = option("", "job name (default: the file name)")
    description: str = option("", "free text")


class _AsOf:
    """Formats as a file-name-safe stamp by default, or with any strftime spec."""

    def __init__(self, stamp: pd.Timestamp) -> None:
        self.stamp = stamp

    def __format__(self, spec: str) -> str:
        if not spec:
            spec = "%Y%m%dT%H%M%S" if self.stamp.second else "%Y%m%dT%H%M"
        return self.stamp.strftime(spec)


def jobs_dir() -> Path:
    """The shipped job definitions (``pipelines/jobs``)."""
    from stgraph import _shipped

    return _shipped.path("pipelines") / "jobs"


def load_job(name_or_path: str) -> JobSpec:
    """A job by name (``pipelines/jobs/NAME.yaml``) or by the path of its YAML file.

    Raises:
        InputError: unknown job, unknown keys, or missing or inconsistent settings.
    """

    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        path = candidate
    else:
        path = jobs_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in jobs_dir().glob("*.yaml"))
            raise InputError(
                f"No job named '{name_or_path}' in {jobs_dir()} (known: {', '.join(known)}); "
                "or give the path of a job file."
            )
    data = read_yaml_mapping(path, "Job file")
    try:
        spec = from_dict(JobSpec, data)
    except InputError as exc:
        raise InputError(f"Job file {path}: {exc}") from None
    spec.name = spec.name or path.stem
    where = f"Job file {path}"
    for key in ("model_uri", "output", "frequency"):
        if not getattr(spec, key):
            raise InputError(f"{where}: '{key}' is required.")
    if (spec.input is None) == (spec.dataset is None):
        raise InputError(f"{where}: give exactly one of 'input' (a file) or 'dataset'.")
    fields = [field for _, field, _, _ in string.Formatter().parse(spec.output) if field]
    if fields != ["as_of"]:
        raise InputError(
            f"{where}: 'output' must contain '{{as_of}}' once and no other field (got "
            f"{spec.output!r}), so that every tick has its own file."
        )
    output_format(spec.output)
    try:
        if pd.Timedelta(pd.tseries.frequencies.to_offset(spec.frequency)) <= pd.Timedelta(0):
            raise ValueError
    except (ValueError, TypeError):
        raise InputError(f"{where}: frequency '{spec.frequency}' is not a time interval.") from None
    return spec


def forecasts_dir() -> Path:
    """Where relative job outputs go: ``$STGRAPH_HOME/forecasts``."""
    from stgraph.tracking.store import stgraph_home

    return stgraph_home() / "forecasts"


def _resolve(path: str) -> Path:
    """A job's output path: absolute as given, relative ones under `forecasts_dir`."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else forecasts_dir() / resolved


def output_path(spec: JobSpec, as_of: pd.Timestamp) -> Path:
    return _resolve(spec.output.format(as_of=_AsOf(as_of)))


def output_pattern(spec: JobSpec) -> Path:
    """The job's output path with ``{as_of}`` left as it is (what the messages show)."""
    return _resolve(spec.output)


def _open(spec: JobSpec) -> tuple[ResolvedModel, Any]:
    model = resolve_model(spec.model_uri)
    history = model.predictor.read_input(spec.input, spec.dataset, spec.data_dir)
    return model, history


def _ticks(model: ResolvedModel, history, stamps: list[pd.Timestamp], spec, force: bool):
    """Forecast each tick; skip those with a complete output (unless ``force``)."""
    expected, ids = model.predictor.rows_per_prediction, model.predictor.id_columns
    pattern = output_pattern(spec)
    print(f"stgraph: {spec.name}: output {pattern}", file=sys.stderr)
    done, skipped, locked = [], [], []
    for stamp in stamps:
        path = output_path(spec, stamp)
        if not force and output_complete(path, expected, ids):
            skipped.append(str(path))
            print(f"stgraph: {spec.name} {stamp}: {path} is complete, skipped", file=sys.stderr)
            continue
        try:
            summary = write_forecast(
                model, history, path, stamp, experiment=spec.experiment, job=spec.name
            )
        except LockedError as exc:  # another process is on this tick: leave it to that one
            locked.append(str(exc))
            continue
        done.append(summary)
        print(f"stgraph: {spec.name} {stamp}: wrote {path}", file=sys.stderr)
    result = {"job": spec.name, "output": str(pattern), "written": done, "skipped": skipped}
    if locked:
        raise LockedError(
            f"job {spec.name}: {len(locked)} tick(s) were locked by another process: "
            + " | ".join(locked)
        )
    return result


def run_job(name: str, as_of: str | None = None, force: bool = False) -> dict[str, Any]:
    """One tick: ``as_of`` (default: the last timestamp of the input)."""
    spec = load_job(name)
    model, data = _open(spec)
    predictor = model.predictor
    stamp = (
        predictor.last_time(data) if as_of is None else predictor.parse_time(as_of, data, "--as-of")
    )
    return _ticks(model, data, [stamp], spec, force)


def backfill_job(name: str, start: str, end: str, force: bool = False) -> dict[str, Any]:
    """Every tick from ``start`` to ``end`` (both included) at the job's frequency."""
    spec = load_job(name)
    model, data = _open(spec)
    first = model.predictor.parse_time(start, data, "--start")
    last = model.predictor.parse_time(end, data, "--end")
    if last < first:
        raise InputError(f"--end {end} is before --start {start}.")
    stamps = list(pd.date_range(first, last, freq=spec.frequency))
    return _ticks(model, data, stamps, spec, force)


def _past_forecasts(spec: JobSpec, id_columns: tuple[str, ...]) -> tuple[pd.DataFrame, int]:
    """Every readable output of the job, concatenated."""
    pattern = "".join(
        literal + ("*" if field else "")
        for literal, field, _, _ in string.Formatter().parse(spec.output)
    )
    base = _resolve(pattern)
    files = sorted(base.parent.glob(base.name)) if "*" not in str(base.parent) else []
    frames = []
    for path in files:
        if path.name.startswith("."):
            continue  # a writer's temporary file
        try:
            frames.append(read_output(path, id_columns))
        except Exception:  # an unreadable file is not a forecast; score the rest
            print(f"stgraph: {spec.name}: cannot read {path}, not scored", file=sys.stderr)
    if not frames:
        raise InputError(
            f"job {spec.name}: no forecast files match {base}; run the job (or a backfill) first."
        )
    return pd.concat(frames, ignore_index=True), len(frames)


def score_job(name: str) -> dict[str, Any]:
    """Join past forecasts with the actuals that have arrived; log the realised error to MLflow.

    The error is the predictor's ``error_name``: ``mae`` for a forecast, ``miss@1`` (1 - hit@1)
    for next-location, written ``miss_at1`` in MLflow, whose names allow no ``@``. Metrics:
    ``realised_{error}_h{h}`` per horizon step, ``realised_{error}`` over all steps, and
    ``realised_{error}_by_as_of`` as a series over the forecast times (step = minutes since the
    epoch), where drift shows as a trend. The result's keys keep the ``mae`` names for every
    task; its ``error`` names what they hold.
    """
    started = time.perf_counter()
    spec = load_job(name)
    model, data = _open(spec)
    forecasts, files = _past_forecasts(spec, model.predictor.id_columns)
    joined = model.predictor.realised_errors(forecasts, data)
    by_horizon = joined.groupby("horizon")["error"].agg(["mean", "count"])
    by_as_of = joined.groupby("as_of")["error"].mean()
    result = {
        "job": spec.name,
        "error": model.predictor.error_name,
        "output": str(output_pattern(spec)),
        "forecast_files": files,
        "forecast_rows": len(forecasts),
        "scored_rows": len(joined),
        "realised_mae": float(joined["error"].mean()) if len(joined) else None,
        "mae_by_horizon": {int(h): float(row["mean"]) for h, row in by_horizon.iterrows()},
        "rows_by_horizon": {int(h): int(row["count"]) for h, row in by_horizon.iterrows()},
    }
    result["run_id"] = _log_scores(spec, model, result, by_horizon, by_as_of, started)
    return result


def _log_scores(spec, model, result, by_horizon, by_as_of, started) -> str:
    import mlflow
    from mlflow.entities import Metric

    from stgraph import __version__
    from stgraph.metrics import mlflow_key
    from stgraph.tracking.tracker import Tracker

    with Tracker(spec.experiment, f"score {spec.name}") as tracker:
        mlflow.log_params(
            {"job": spec.name, "model_uri": spec.model_uri, "model_version": model.version or ""}
        )
        metrics = {
            "scored_rows": result["scored_rows"],
            "forecast_files": result["forecast_files"],
            "duration_seconds": time.perf_counter() - started,
        }
        error = mlflow_key(result["error"])  # MLflow names allow no "@"
        if result["realised_mae"] is not None:
            metrics[f"realised_{error}"] = result["realised_mae"]
        metrics.update(
            {f"realised_{error}_h{h}": float(row["mean"]) for h, row in by_horizon.iterrows()}
        )
        mlflow.log_metrics(metrics)
        series = [
            Metric(
                f"realised_{error}_by_as_of",
                float(mae),
                int(pd.Timestamp(stamp).timestamp() * 1000),
                int(pd.Timestamp(stamp).timestamp() // 60),
            )
            for stamp, mae in by_as_of.items()
            if np.isfinite(mae)
        ]
        if series:
            mlflow.MlflowClient().log_batch(tracker.run_id, metrics=series)
        table = by_horizon.rename(columns={"mean": error, "count": "rows"}).reset_index()
        mlflow.log_text(table.to_csv(index=False), f"scores/{error}_by_horizon.csv")
        mlflow.set_tags(
            {"stgraph.version": __version__, "stgraph.kind": "score", "stgraph.job": spec.name}
        )
    return str(tracker.run_id)
