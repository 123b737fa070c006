"""Runs recorded in a few transactions, without the fluent API: what a forecast call logs.

This module imports MLflow and the store settings only (no torch, no pandas of our own), so that
the bookkeeping process of a forecast call (`stgraph.serving.bookkeeper`) starts fast.
"""

from __future__ import annotations

import contextlib
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from stgraph.tracking.store import connect, default_artifact_root, retry_transient


def experiment_id_of(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (with `default_artifact_root`) if missing.

    Two processes may both find it missing: the second create fails with
    ``RESOURCE_ALREADY_EXISTS`` and reads the first one's experiment instead.
    """
    experiment = retry_transient(lambda: client.get_experiment_by_name(name))
    if experiment is not None:
        return experiment.experiment_id
    try:
        return retry_transient(lambda: client.create_experiment(name, default_artifact_root()))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        experiment = retry_transient(lambda: client.get_experiment_by_name(name))
        if experiment is None:  # created and deleted in between: nothing sensible to do
            raise
        return experiment.experiment_id


def record_run(
    experiment: str,
    run_name: str,
    params: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> str:
    """Log a run that is complete when it starts (a forecast call): created, logged and FINISHED
    in three transactions, returning its id.

    `Tracker` goes through MLflow's fluent API, whose ``start_run`` asks every run-context plugin
    for tags (one imports GitPython and runs git); here the tags are MLflow's default ones (user,
    source name and type) plus ``tags``. A failure after the run was created ends it FAILED.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking.context.default_context import DefaultRunContext
    from mlflow.utils.time import get_current_time_millis

    client = mlflow.MlflowClient(connect())
    experiment_id = experiment_id_of(client, experiment)
    run = retry_transient(
        lambda: client.create_run(experiment_id, tags=DefaultRunContext().tags(), run_name=run_name)
    )
    run_id = run.info.run_id
    now = get_current_time_millis()
    try:
        retry_transient(
            lambda: client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, param_value(v)) for k, v in params.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
        )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
            client.set_terminated(run_id, "FAILED")
        raise
    retry_transient(lambda: client.set_terminated(run_id, "FINISHED"))
    return run_id


def param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
