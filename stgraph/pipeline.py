"""The fit pipeline: dataset -> graph -> windows -> task -> model -> trainer -> MLflow.

`resolve_config` turns ``stgraph fit NAME`` plus flags into one typed `FitConfig` (pipeline YAML
from ``pipelines/``, then ``--config``, then ``--set``, then explicit flags); `fit` runs it.
"""

from __future__ import annotations

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
from stgraph.data.adapters.base import RawDataset
from stgraph.data.scaler import per_split_scalers
from stgraph.data.sources import open_dataset
from stgraph.data.windows import split_samples
from stgraph.errors import InputError
from stgraph.graphs.recipes import build_graph
from stgraph.models.base import MODELS, ModelContext, build_model, count_parameters
from stgraph.tasks.forecast import ForecastTask
from stgraph.training import distributed
from stgraph.training.config import TrainConfig
from stgraph.training.trainer import Trainer


@dataclass
class DataSection:
    dataset: str = option("simulator", "dataset card name, or the path of a CSV/Parquet file")
    data_dir: str | None = option(None, "folder holding the dataset's files")
    download: bool = option(False, "download missing files listed in the card")
    window: int = option(12, "input steps")
    horizon: int = option(12, "forecast steps")
    split: dict = option({}, "overrides of the card's split (method, ratios, val_start, ...)")
    graph: dict = option({}, "overrides of the card's graph recipe (method and parameters)")
    loss: str = option("mae", "training loss: mae | mse | huber (masked, in the data's units)")
    graph_file: str | None = option(None, "your own data: edge list or adjacency CSV")
    freq: str | None = option(None, "your own data: sampling interval, e.g. 15min")
    null_value: str | None = option(None, "your own data: zero | nan | none (what marks missing)")
    normalization: str = option(
        "train",
        "train: one scaler fitted on the training steps | per_split: each split scaled with its "
        "own statistics, as GRAM-ODE's official code does (leaks the test scale; parity runs only)",
    )


@dataclass
class ModelSection:
    name: str = option("stid", "registered model name (see `stgraph models`)")
    params: dict = option({}, "model hyperparameters (checked against the model's config)")


@dataclass
class TrackingSection:
    experiment: str | None = option(None, "MLflow experiment (default: the dataset name)")
    register: str | None = option(None, "register the model under this name")
    log_model: bool = option(True, "log the model as an MLflow pyfunc")
    plot_nodes: int = option(4, "nodes shown in the forecast-vs-truth plot")


@dataclass
class FitConfig:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingSection = field(default_factory=TrackingSection)


def pipeline_path(name: str) -> Path | None:
    path = _shipped.path("pipelines") / f"{name}.yaml"
    return path if path.is_file() else None


def _read_pipeline(path: Path) -> dict[str, Any]:
    """A pipeline file, on top of the one its ``extends:`` names (shared by a dataset family)."""
    data = read_yaml_mapping(path, "Pipeline")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = pipeline_path(parent)
    if base is None:
        raise InputError(f"Pipeline {path}: extends '{parent}', which is not in pipelines/.")
    return deep_merge(_read_pipeline(base), data)


def resolve_config(
    dataset: str,
    model: str | None = None,
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
        data = deep_merge(_read_pipeline(path), data)
    if config_file:
        data = deep_merge(data, read_yaml_mapping(Path(config_file), "Config file"))
    presets = data.pop("presets", {}) or {}
    name = model or data.get("model", {}).get("name", ModelSection.name)
    if model and model != data.get("model", {}).get("name"):
        data["model"] = {"name": model}  # another model: the pipeline's params were not for it
    if name in presets:
        data = deep_merge(data, presets[name])
    for assignment in assignments or []:
        key, value = parse_assignment(assignment)
        set_path(data, key, value)
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(data, key, value)
    config = from_dict(FitConfig, data, "config")
    MODELS.get(config.model.name)  # unknown model: fail before loading any data
    for key, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size")):
        value = getattr(config.train, key)
        if value <= 0:  # fail before loading any data (the trainer checks again)
            raise InputError(f"train.{key} ({flag}) must be positive, got {value}.")
    if config.data.normalization not in ("train", "per_split"):
        raise InputError(
            f"data.normalization must be 'train' or 'per_split', got {config.data.normalization!r}."
        )
    return config


@dataclass
class Prepared:
    """Everything a run needs before training starts."""

    raw: RawDataset
    task: ForecastTask
    context: ModelContext


def prepare(config: FitConfig) -> Prepared:
    """Load the data, split it, build the graph from training steps only, make the task."""
    d = config.data
    raw = open_dataset(
        d.dataset,
        data_dir=d.data_dir,
        download=d.download,
        graph=d.graph_file,
        freq=d.freq,
        null_value=d.null_value,
    )
    series = raw.series
    split = deep_merge(raw.card.split, d.split)
    splits = split_samples(series.timestamps, d.window, d.horizon, **split)
    # A different graph method replaces the card's recipe; the same one only tunes it.
    same_method = d.graph.get("method", raw.card.graph.get("method")) == raw.card.graph.get(
        "method"
    )
    recipe = deep_merge(raw.card.graph, d.graph) if same_method else dict(d.graph)
    graph = build_graph(raw, recipe, splits.train_steps)
    split_scalers = (
        per_split_scalers(series, splits, d.window) if d.normalization == "per_split" else None
    )
    task = ForecastTask(
        series, graph, splits, d.window, d.horizon, loss=d.loss, split_scalers=split_scalers
    )
    coords = torch.from_numpy(series.coords).float() if series.coords is not None else None
    context = ModelContext(
        num_nodes=series.num_nodes,
        in_channels=series.num_channels,
        out_channels=task.num_targets,
        window=d.window,
        horizon=d.horizon,
        steps_per_day=series.steps_per_day,
        graph=graph,
        coords=coords,
    )
    return Prepared(raw, task, context)


def fit(
    config: FitConfig, resume_run_id: str | None = None, quiet: bool = False
) -> dict[str, Any] | None:
    """Train and evaluate one model; track everything in MLflow.

    Returns the run summary (``None`` on the non-zero ranks of a ``torchrun`` job, which neither
    track nor report).
    """
    from stgraph.tracking.store import runs_dir
    from stgraph.tracking.tracker import NullTracker, Tracker

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    dist = distributed.from_environment()
    trainer = None
    try:
        prepared = prepare(config)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model.name, config.model.params, prepared.context)
        name = prepared.raw.series.name
        experiment = config.tracking.experiment or name
        # Built before the MLflow run exists, so that bad training settings (a batch larger than
        # the training split, an unknown optimiser) fail without leaving a run behind.
        trainer = Trainer(prepared.task, model, config.train, runs_dir(), quiet=quiet, dist=dist)
        tracker = (
            Tracker(experiment, f"{config.model.name}-{name}", resume_run_id)
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
            resolved = to_dict(config)
            resolved["model"]["params"] = to_dict(model.config)  # the model's defaults too
            tracker.log_config(resolved)
            tracker.set_tags(
                {
                    "stgraph.version": __version__,
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
            summary = _finish(config, prepared, trainer, tracker, time.perf_counter() - started)
        return {
            "run_id": run_id,
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


def _finish(
    config: FitConfig, prepared: Prepared, trainer: Trainer, tracker: Any, fit_seconds: float
) -> dict[str, Any]:
    """Score the best model on the test split and log the results, artifacts and model."""
    from stgraph.serving.bundle import save_bundle
    from stgraph.serving.pyfunc import log_pyfunc
    from stgraph.tracking.report import log_evaluation

    task, model = prepared.task, trainer.model
    test_metrics, predictions = trainer.predict_split("test")
    test = test_metrics.compute()
    tracker.log_metrics(test, prefix="test_")
    tracker.log_metrics({"fit_seconds": fit_seconds})
    with tempfile.TemporaryDirectory(prefix="stgraph-") as tmp:
        bundle = Path(tmp) / "model.pt"
        save_bundle(
            bundle,
            task,
            model,
            config.model.name,
            config.model.params,
            prepared.raw.card.null_value,
        )
        tracker.log_artifact(bundle, "checkpoint")
        log_evaluation(
            tracker, test_metrics, task, predictions, Path(tmp), config.tracking.plot_nodes
        )
        version = (
            log_pyfunc(bundle, config.tracking.register) if config.tracking.log_model else None
        )
    return {"parameters": count_parameters(model), "test": test, "registered_version": version}
