"""What each ``stgraph`` command does; `stgraph.cli.main` dispatches to `COMMANDS`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stgraph.errors import InputError


def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph import pipeline

    if args.resume:
        config = _config_of_run(args.resume, "--resume")
    else:
        flags = {
            "model.name": args.model,
            "train.epochs": args.epochs,
            "train.batch_size": args.batch_size,
            "train.lr": args.lr,
            "train.seed": args.seed,
            "train.threads": args.threads,
            "data.data_dir": args.data_dir,
            "data.download": args.download or None,
            "data.graph_file": args.graph,
            "data.freq": args.freq,
            "data.null_value": args.null_value,
            "tracking.register": args.register,
        }
        config = pipeline.resolve_config(
            args.dataset, args.model, args.task, args.config, args.set, flags
        )
    return pipeline.fit(config, resume_run_id=args.resume, quiet=args.quiet)


def _config_of_run(run_id: str, command: str):
    """The resolved config a fit logged; ``command`` (``evaluate``, ``--resume``) names the
    caller in errors, which tell a run that does not exist from one that is not a fit."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from stgraph import pipeline
    from stgraph.config import from_dict, load_yaml
    from stgraph.tracking.store import tracking_uri

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.MlflowClient(uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise InputError(
            f"{command} {run_id}: no such run in the MLflow store {uri}. `stgraph fit` prints the "
            "run id on its first line (and in --json); if the run is in another store, set "
            "MLFLOW_TRACKING_URI to it."
        ) from None
    try:
        data = load_yaml(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    except Exception:
        raise InputError(
            f"{command} {run_id}: the run exists in the MLflow store {uri} but has no "
            "config.yaml, so it is not a `stgraph fit` run (a forecast or score run?) or its "
            "artifacts are gone."
        ) from None
    return from_dict(pipeline.FitConfig, data)


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import mlflow

    from stgraph import pipeline
    from stgraph.serving.bundle import load_predictor
    from stgraph.training.trainer import Trainer

    config = _config_of_run(args.run_id, "evaluate")
    if args.data_dir:
        config.data.data_dir = args.data_dir
    path = mlflow.artifacts.download_artifacts(f"runs:/{args.run_id}/checkpoint/model.pt")
    model = load_predictor(path).model
    task = pipeline.prepare(config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, model, config.train, Path(tmp), quiet=True)
        test = trainer.evaluate("test")
    return {
        "run_id": args.run_id,
        "task": task.name,
        "dataset": task.dataset_name,
        "model": config.model.name,
        "test": test,
    }


def cmd_data(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph.data.cards import list_cards, load_card
    from stgraph.data.paths import resolve_data_dir

    if args.action == "list":
        rows = []
        for name in list_cards():
            card = load_card(name)
            folder = resolve_data_dir(name)
            rows.append(
                {
                    "name": name,
                    "domain": card.domain,
                    "title": card.title,
                    "format": card.format,
                    "files": _files_state(card, folder),
                    "data_dir": str(folder) if card.files else None,
                }
            )
        width = max(len(row["name"]) for row in rows)
        print(f"{'name':<{width}} {'domain':<9} {'files':<9} title")
        for row in rows:
            print(f"{row['name']:<{width}} {row['domain']:<9} {row['files']:<9} {row['title']}")
        print(f"files: whether the card's files are in {resolve_data_dir('NAME')}")
        print("(`stgraph data download NAME` fetches them; `fit --data-dir DIR` reads another")
        print("folder). generated: made from a seed, no files.")
        return {"datasets": rows}
    card = load_card(args.name)
    if args.action == "info":
        print(card.path.read_text() if card.path else card)
        return {"name": card.name}
    from stgraph.data.download import ensure_files

    folder = resolve_data_dir(card.name, args.data_dir)
    ensure_files(card, folder, download=True)
    print(f"{card.name}: files ready in {folder}", file=sys.stderr)
    return {"name": card.name, "data_dir": str(folder)}


def _files_state(card: Any, folder: Any) -> str:
    """``generated`` (a card without files), ``present`` (every required file is in
    ``folder``; not checksummed here) or ``missing``."""
    if not card.files:
        return "generated"
    required = [f for f in card.files if not f.optional]
    return "present" if all((folder / f.name).is_file() for f in required) else "missing"


def cmd_models(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "action", None) == "promote":
        from stgraph.serving.registry import promote

        result = promote(args.name, args.version, args.alias)
        print(f"{result['model_uri']} -> version {result['version']}", file=sys.stderr)
        return result

    from stgraph.data.config import DataConfig
    from stgraph.models import MODELS
    from stgraph.pipeline import TrackingSection
    from stgraph.training.config import TrainConfig

    listing = {}
    for name in MODELS.names():
        cls = MODELS.get(name)
        print(f"{name} ({cls.task} task): {_summary(cls)}")
        listing[name] = _print_fields(cls.config_class, "model.params.")
    print()
    print("Settings of every fit (--set KEY=VALUE, or a pipeline or --config file; the task's")
    print("task.params.* are listed by `stgraph tasks`):")
    settings = {}
    for section, config_class in (
        ("train", TrainConfig),
        ("data", DataConfig),
        ("tracking", TrackingSection),
    ):
        print(f"{section}:")
        settings[section] = _print_fields(config_class, f"{section}.")
    return {"models": listing, "settings": settings}


def cmd_tasks(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph.models import MODELS
    from stgraph.tasks import TASKS

    listing = {}
    for name in TASKS.names():
        cls = TASKS.get(name)
        models = [m for m in MODELS.names() if MODELS.get(m).task == name]
        print(f"{name}: {_summary(cls)}")
        print(f"    models: {', '.join(models)} (default {cls.default_model})")
        params = _print_fields(cls.config_class, "task.params.")
        listing[name] = {"params": params, "models": models}
    return {"tasks": listing}


# A period after these ends no sentence: "Xu et al. (2020)", "e.g. a", "Fig. 2".
_ABBREVIATIONS = {"al.", "e.g.", "i.e.", "cf.", "vs.", "fig.", "eq.", "sec."}


def _summary(cls: type) -> str:
    """The first sentence of a class docstring, whole however many lines it spans: it ends at
    a period followed by a space, outside parentheses and brackets and not after an
    abbreviation (``et al.``); reST markup (````code````) is shown plain."""
    text = " ".join((cls.__doc__ or "").split("\n\n")[0].split()).replace("``", "")
    depth = 0
    for index, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char == "." and depth == 0 and text[index + 1 : index + 2] in (" ", ""):
            word = text[: index + 1].rsplit(" ", 1)[-1].lower().lstrip("([")
            if word not in _ABBREVIATIONS:
                return text[: index + 1]
    return text.rstrip(".") + "." if text else ""


def _print_fields(config_class: type, prefix: str = "") -> dict[str, Any]:
    """Print a config dataclass's fields (as ``prefix`` + name) with defaults and help; return
    the defaults."""
    import dataclasses

    fields = {}
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        fields[f.name] = default
        print(f"    {prefix}{f.name} = {default!r}  {f.metadata.get('help', '')}")
    return fields


def cmd_forecast(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph.serving.forecast import forecast_command

    result = forecast_command(
        args.model_uri, args.output, args.input, args.dataset, args.data_dir, args.as_of
    )
    print(f"stgraph: wrote {result['rows']} rows to {result['output']}", file=sys.stderr)
    return result


def cmd_job(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph.serving import jobs

    if args.action == "run":
        return jobs.run_job(args.name, args.as_of, args.force)
    if args.action == "backfill":
        return jobs.backfill_job(args.name, args.start, args.end, args.force)
    return jobs.score_job(args.name)


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    from stgraph.tracking.checkpoints import clean

    if args.older_than is not None and not args.older_than >= 0:
        raise InputError(f"--older-than must be 0 or more days, got {args.older_than}.")
    return clean(args.older_than, args.dry_run)


COMMANDS = {
    "fit": cmd_fit,
    "evaluate": cmd_evaluate,
    "data": cmd_data,
    "models": cmd_models,
    "tasks": cmd_tasks,
    "forecast": cmd_forecast,
    "job": cmd_job,
    "runs": cmd_runs,
}
