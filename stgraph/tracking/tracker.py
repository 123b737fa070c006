"""MLflow tracking of a fit: one run per fit in an experiment per dataset.

The run records the full resolved config as params, per-epoch train/validation metrics, final
test metrics, artifacts (config, best checkpoint, plots, test predictions) and the model as an
MLflow pyfunc that can be loaded back for inference or registered. A run that fails ends FAILED;
one interrupted by Ctrl-C or SIGTERM ends KILLED; an exception never leaves it RUNNING.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from stgraph.config import flatten
from stgraph.errors import InputError, Terminated
from stgraph.metrics import mlflow_key
from stgraph.tasks.base import Report
from stgraph.tracking.records import experiment_id_of, param_value
from stgraph.tracking.store import connect, retry_transient, tracking_uri


class Tracker:
    """A context manager around one MLflow run.

    Args:
        experiment: experiment name (created if missing).
        run_name: display name of a new run.
        resume_run_id: reopen this run instead of creating one.
        nested: start the run inside the active one (a fold of a rolling evaluation).
    """

    def __init__(
        self,
        experiment: str,
        run_name: str,
        resume_run_id: str | None = None,
        nested: bool = False,
    ) -> None:
        self.uri = tracking_uri()
        self.nested = nested
        self.experiment = experiment
        self.run_name = run_name
        self.resume_run_id = resume_run_id
        self.run_id: str | None = None
        self._previous_sigterm: Any = None

    def __enter__(self) -> Tracker:
        connect()  # a new local store is created once, under a lock (see `connect`)
        mlflow.set_tracking_uri(self.uri)
        if self.resume_run_id:
            try:
                run = mlflow.start_run(run_id=self.resume_run_id)
            except MlflowException:
                raise InputError(
                    f"--resume {self.resume_run_id}: no such run in the MLflow store {self.uri}."
                ) from None
        else:
            experiment_id = experiment_id_of(mlflow.MlflowClient(self.uri), self.experiment)
            run = retry_transient(
                lambda: mlflow.start_run(
                    experiment_id=experiment_id, run_name=self.run_name, nested=self.nested
                )
            )
        self.run_id = run.info.run_id
        self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
            retry_transient(lambda: mlflow.set_tag("error", f"{exc_type.__name__}: {exc}"[:5000]))
        try:
            mlflow.end_run(RunStatus.to_string(status))
        except MlflowException as error:  # end_run dropped the active run before it failed
            if error.error_code != "TEMPORARILY_UNAVAILABLE":
                raise
            client = mlflow.MlflowClient(self.uri)
            retry_transient(
                lambda: client.set_terminated(str(self.run_id), RunStatus.to_string(status))
            )

    def log_config(self, config: dict[str, Any]) -> None:
        """Params = the full resolved config, flattened (not re-logged on resume)."""
        if not self.resume_run_id:
            params = {key: param_value(value) for key, value in flatten(config).items()}
            retry_transient(lambda: mlflow.log_params(params))
            mlflow.log_dict(config, "config.yaml")

    def log_metrics(self, metrics: dict[str, float], step: int = 0, prefix: str = "") -> None:
        finite = {mlflow_key(prefix + k): float(v) for k, v in metrics.items() if v == v}
        retry_transient(lambda: mlflow.log_metrics(finite, step=step))

    def set_tags(self, tags: dict[str, Any]) -> None:
        retry_transient(lambda: mlflow.set_tags(tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        mlflow.log_figure(figure, artifact_file)

    def log_report(self, report: Report, workdir: Path) -> None:
        """A task's report: each figure as a PNG, each table as Parquet, at its artifact path."""
        for artifact_file, figure in report.figures.items():
            self.log_figure(figure, artifact_file)
        for artifact_file, table in report.tables.items():
            path = workdir / Path(artifact_file).name
            table.to_parquet(path, index=False)
            self.log_artifact(path, str(Path(artifact_file).parent))


class NullTracker:
    """Stands in for `Tracker` on the non-zero ranks of a torchrun job: logs nothing."""

    run_id = None
    uri = ""

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _interrupt(signum: int, frame: Any) -> None:
    raise Terminated(signum)
