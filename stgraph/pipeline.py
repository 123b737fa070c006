"""The fit pipeline: data -> task (windows, graphs, scalers) -> model -> trainer -> MLflow, the
same for every task: everything task-specific happens behind the `Task` protocol.

`resolve_config` turns ``stgraph fit NAME`` plus flags into one typed `FitConfig` (pipeline YAML
from ``pipelines/``, then ``--config``, then ``--set``, then explicit flags); `fit` runs it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stgraph import __version__, _shipped
from stgraph.config import (
    deep_merge,
    from_dict,
    option,
    parse_assignment,
    read_yaml_mapping,
    set_path,
    to_dict,
)
from stgraph.data.config import DataConfig
from stgraph.errors import InputError
from stgraph.models.base import MODELS, build_model, count_parameters, resolve_model_config
from stgraph.runtime import configure_threads
from stgraph.tasks.base import TASKS, Task
from stgraph.training import distributed
from stgraph.training.config import TrainConfig
from stgraph.training.trainer import CHECKPOINT, Trainer


@dataclass
class TaskSection:
    name: str = option("forecast", "registered task name (see `stgraph tasks`)")
    params: dict = option({}, "the task's settings (checked against the task's config)")


@dataclass
class ModelSection:
    name: str = option("", "registered model name (see `stgraph models`; default: the task's)")
    params: dict = option({}, "model hyperparameters (checked against the model's config)")


@dataclass
class TrackingSection:
    experiment: str | None = option(None, "MLflow experiment (default: the dataset name)")
    register: str | None = option(None, "register the model under this name")
    log_model: bool = option(True, "log the model as an MLflow pyfunc")


@dataclass
class FitConfig:
    task: TaskSection = field(default_factory=TaskSection)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingSection = field(default_factory=TrackingSection)


def pipeline_path(name: str) -> Path | None:
    path = _shipped.path("pipelines") / f"{name}.yaml"
    return path if path.is_file() else None


def _layer(data: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` merged over ``data`` key by key, except that a layer that changes the LR
    scheduler does not inherit the old scheduler's parameters."""
    scheduler = (layer.get("train") or {}).get("scheduler")
    return deep_merge(_without_other_schedule(data, scheduler), layer)


def _without_other_schedule(data: dict[str, Any], scheduler: str | None) -> dict[str, Any]:
    """``data`` without ``train.scheduler_params`` when ``scheduler`` replaces its scheduler:
    one schedule's parameters (cosine's T_max) mean nothing to another (StepLR's step_size)."""
    train = data.get("train") or {}
    if scheduler is None or scheduler == train.get("scheduler", "none"):
        return data
    return {**data, "train": {k: v for k, v in train.items() if k != "scheduler_params"}}


def _read_pipeline(path: Path) -> dict[str, Any]:
    """A pipeline file, on top of the one its ``extends:`` names (shared by a dataset family)."""
    data = read_yaml_mapping(path, "Pipeline")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = pipeline_path(parent)
    if base is None:
        raise InputError(f"Pipeline {path}: extends '{parent}', which is not in pipelines/.")
    return _layer(_read_pipeline(base), data)


def _is_prices(spec: str) -> bool:
    """Whether ``spec`` is a user's price table or folder of per-ticker price files."""
    from stgraph.data.adapters.prices import is_price_folder, is_price_table

    path = Path(spec).expanduser()
    if path.is_dir():
        return is_price_folder(path)
    return (
        path.is_file()
        and path.suffix.lower() in (".csv", ".parquet", ".pq")
        and is_price_table(path)
    )


def resolve_config(
    dataset: str,
    model: str | None = None,
    task: str | None = None,
    config_file: str | None = None,
    assignments: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> FitConfig:
    """Layer the settings: pipeline < --config < preset of the chosen model < --set < flags.

    A pipeline may hold ``presets: {model-name: {model: ..., train: ...}}``, applied when that
    model is selected (so ``--model sttn-faithful`` also takes its optimiser recipe).
    """
    data: dict[str, Any] = {"data": {"dataset": dataset}}
    path = pipeline_path(dataset)
    if path is not None:
        # A pipeline may name its dataset (a variant such as stocknet-rolling); else its own name.
        data = deep_merge(data, _read_pipeline(path))
    if config_file:
        data = _layer(data, read_yaml_mapping(Path(config_file), "Config file"))
    if task is None and path is None and _is_prices(dataset):
        task = "cross-section"  # daily prices on a trading calendar: nothing else reads them
    if task and task != data.get("task", {}).get("name", TaskSection.name):
        # Another task: the pipeline's task settings, model and presets were not for it.
        data = {"data": data.get("data", {}), "task": {"name": task}}
    task_class = TASKS.get(data.get("task", {}).get("name", TaskSection.name))
    data.setdefault("model", {}).setdefault("name", task_class.default_model)
    presets = data.pop("presets", {}) or {}
    name = model or data["model"]["name"]
    if model and model != data.get("model", {}).get("name"):
        data["model"] = {"name": model}  # another model: the pipeline's params were not for it
    if name in presets:
        data = _layer(data, presets[name])
    settings = [parse_assignment(a) for a in assignments or []]
    settings += [(k, v) for k, v in (flags or {}).items() if v is not None]
    for key, value in settings:
        if key == "train.scheduler":
            data = _without_other_schedule(data, value)
    for key, value in settings:
        set_path(data, key, value)
    config = from_dict(FitConfig, data)
    # Typos and bad values fail here, before any data is read; the resolved settings (defaults
    # included) are what MLflow logs and the bundle keeps.
    task_class = TASKS.get(config.task.name)
    params = from_dict(task_class.config_class, config.task.params, "task.params")
    config.task.params = to_dict(params)
    model_class = MODELS.get(config.model.name)
    if model_class.task != config.task.name:
        fits = [n for n in MODELS.names() if MODELS.get(n).task == config.task.name]
        raise InputError(
            f"Model '{config.model.name}' is a {model_class.task} model; task "
            f"'{config.task.name}' takes {', '.join(fits) or 'no registered model'}."
        )
    config.model.params = to_dict(resolve_model_config(config.model.name, config.model.params))
    for key, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size")):
        value = getattr(config.train, key)
        if value <= 0:  # fail before loading any data (the trainer checks again)
            raise InputError(f"train.{key} ({flag}) must be positive, got {value}.")
    return config


def prepare(config: FitConfig) -> Task:
    """Load the data and make the task (splits, graphs and scalers from training data only)."""
    cls = TASKS.get(config.task.name)
    return cls.build(config.data, from_dict(cls.config_class, config.task.params, "task.params"))


def fit(
    config: FitConfig,
    resume_run_id: str | None = None,
    quiet: bool = False,
    nested: bool = False,
) -> dict[str, Any] | None:
    """Train and evaluate one model; track everything in MLflow.

    Returns the run summary (``None`` on the non-zero ranks of a ``torchrun`` job, which neither
    track nor report). The epoch checkpoints under ``runs_dir()/RUN_ID`` are removed once the run
    has ended FINISHED (the model is in MLflow); a KILLED or FAILED run keeps them for
    ``resume_run_id``. With ``data.folds`` each fold is a fit of its own (`fit_folds`).
    """
    if config.data.folds:
        return fit_folds(config, resume_run_id, quiet)
    from stgraph.tracking.checkpoints import checkpoint_dir, remove_checkpoints
    from stgraph.tracking.store import runs_dir
    from stgraph.tracking.tracker import NullTracker, Tracker

    configure_threads(config.train.threads)
    dist = distributed.from_environment()
    trainer = None
    try:
        task = prepare(config)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model.name, config.model.params, task.context)
        name = task.dataset_name
        experiment = config.tracking.experiment or name
        # Built before the MLflow run exists, so that bad training settings (a batch larger than
        # the training split, an unknown optimiser) fail without leaving a run behind.
        trainer = Trainer(task, model, config.train, runs_dir(), quiet=quiet, dist=dist)
        if resume_run_id is not None and model.trainable:
            # Checked before the run is reopened: failing inside it would mark it FAILED.
            checkpoint = checkpoint_dir(resume_run_id) / CHECKPOINT
            if not checkpoint.is_file():
                raise InputError(
                    f"--resume {resume_run_id}: no checkpoint at {checkpoint}. A run that "
                    "finished has none left (its model is in MLflow: `stgraph evaluate "
                    f"{resume_run_id}`); one stopped before its first epoch ended never had one; "
                    "`stgraph runs clean` removes those of stopped runs."
                )
        tracker = (
            Tracker(experiment, f"{config.model.name}-{name}", resume_run_id, nested)
            if dist.is_main
            else NullTracker()
        )
        with tracker:
            run_id = distributed.broadcast(tracker.run_id, dist)
            if not quiet and dist.is_main:
                print(
                    f"stgraph: run {run_id} in experiment '{experiment}' ({tracker.uri}); "
                    f"continue an interrupted fit with --resume {run_id}",
                    file=sys.stderr,
                    flush=True,
                )
            tracker.log_config(to_dict(config))
            tracker.set_tags(
                {
                    "stgraph.version": __version__,
                    "task": task.name,
                    "dataset": name,
                    "model": config.model.name,
                    "pid": str(os.getpid()),
                    "world_size": str(dist.world_size),
                }
            )
            tracker.log_metrics({"parameters": count_parameters(model)})
            trainer.run_dir = runs_dir() / run_id
            trainer.on_epoch = lambda epoch, metrics: tracker.log_metrics(metrics, step=epoch)
            started = time.perf_counter()
            result = trainer.fit(resume=resume_run_id is not None)
            if not dist.is_main:
                return None
            tracker.log_metrics(
                {"best_epoch": result.best_epoch, "seconds_per_epoch": result.seconds_per_epoch}
            )
            summary = _finish(config, task, trainer, tracker, time.perf_counter() - started)
        # The run has ended FINISHED: the checkpoints were only for --resume.
        remove_checkpoints(run_id)
        return {
            "run_id": run_id,
            "task": task.name,
            "dataset": name,
            "model": config.model.name,
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": round(result.seconds_per_epoch, 3),
            **summary,
        }
    finally:
        if trainer is not None:
            trainer.close()  # before the process group goes: see Trainer.close
        distributed.shutdown(dist)


def fit_folds(
    config: FitConfig, resume_run_id: str | None = None, quiet: bool = False
) -> dict[str, Any] | None:
    """A rolling evaluation: one fit per entry of ``data.folds`` (merged over ``data.split``),
    each a nested MLflow run under one parent run, which logs the mean and the standard
    deviation over the folds of every test metric (``test_mean_rank_ic``, ``test_std_...``)."""
    import numpy as np

    from stgraph.tracking.tracker import Tracker

    if resume_run_id is not None:
        raise InputError("--resume continues one run; a rolling evaluation (data.folds) has many.")
    if not all(isinstance(fold, dict) and fold for fold in config.data.folds):
        raise InputError("data.folds must be a list of split overrides, e.g. {test_start: ...}.")
    name = Path(config.data.dataset).stem
    experiment = config.tracking.experiment or name
    folds = [
        dataclasses.replace(
            config,
            data=dataclasses.replace(
                config.data, split=deep_merge(config.data.split, fold), folds=[]
            ),
        )
        for fold in config.data.folds
    ]
    # The first fold's data and model, built before the parent run exists: bad settings fail
    # without leaving a run behind (a later fold's empty split still fails inside it).
    build_model(folds[0].model.name, folds[0].model.params, prepare(folds[0]).context)
    summaries = []
    with Tracker(experiment, f"{config.model.name}-{name}-rolling") as parent:
        parent.log_config(to_dict(config))
        for number, (fold, data) in enumerate(zip(config.data.folds, folds), start=1):
            if not quiet:
                print(
                    f"stgraph: fold {number} of {len(config.data.folds)}: {fold}", file=sys.stderr
                )
            summary = fit(data, quiet=quiet, nested=True)
            if summary is None:  # a non-zero torchrun rank
                continue
            summaries.append(summary)
        if not summaries:
            return None
        tests = [s["test"] for s in summaries]
        keys = [k for k in tests[0] if all(np.isfinite(t.get(k, np.nan)) for t in tests)]
        mean = {k: float(np.mean([t[k] for t in tests])) for k in keys}
        std = {
            k: float(np.std([t[k] for t in tests], ddof=1)) if len(tests) > 1 else 0.0 for k in keys
        }
        parent.log_metrics(mean, prefix="test_mean_")
        parent.log_metrics(std, prefix="test_std_")
    return {
        "run_id": parent.run_id,
        "task": summaries[0]["task"],
        "dataset": summaries[0]["dataset"],
        "model": config.model.name,
        "folds": summaries,
        "test": mean,
        "test_std": std,
    }


def _finish(
    config: FitConfig, task: Task, trainer: Trainer, tracker: Any, fit_seconds: float
) -> dict[str, Any]:
    """Score the best model on the test split and log the results, artifacts and model."""
    from stgraph.serving.bundle import save_bundle
    from stgraph.serving.pyfunc import log_pyfunc

    model = trainer.model
    test_metrics, predictions = trainer.predict_split("test")
    test = test_metrics.compute()
    tracker.log_metrics(test, prefix="test_")
    tracker.log_metrics({"fit_seconds": fit_seconds})
    with tempfile.TemporaryDirectory(prefix="stgraph-") as tmp:
        bundle = Path(tmp) / "model.pt"
        save_bundle(bundle, task, model, config.model.name, to_dict(config))
        tracker.log_artifact(bundle, "checkpoint")
        report = task.report("test", test_metrics, predictions, config.model.name)
        tracker.log_report(report, Path(tmp))
        version = (
            log_pyfunc(bundle, config.tracking.register) if config.tracking.log_model else None
        )
    return {"parameters": count_parameters(model), "test": test, "registered_version": version}
