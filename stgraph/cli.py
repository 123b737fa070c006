"""The ``stgraph`` command line: train and re-score models (fit, evaluate), datasets (data list,
data info, data download), the registered models and tasks with every setting (models, tasks),
forecasts from logged models (forecast, job run/backfill/score) and local checkpoints (runs clean).

Exit codes: 0 success; 2 bad input or usage (one-paragraph message, no traceback); 1 internal
error (traceback with ``--debug``); 75 another process holds the lock of the output (forecast,
job); 130 interrupted by Ctrl-C (SIGINT); 143 terminated by SIGTERM (128 + 15). A fit stopped
either way ends its MLflow run KILLED and keeps its checkpoint for ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import traceback
import warnings
from typing import Any

from stgraph.errors import InputError, StgraphError


def _fit_parser(commands) -> None:
    p = commands.add_parser("fit", help="train a model on a dataset and track it in MLflow")
    p.add_argument("dataset", help="dataset name (see `stgraph data list`) or a CSV/Parquet file")
    p.add_argument("--model", help="registered model name (see `stgraph models`)")
    p.add_argument(
        "--task", help="registered task name (see `stgraph tasks`); default: the pipeline's"
    )
    p.add_argument(
        "--epochs", type=int, help="maximum number of epochs (train.epochs; default: pipeline's)"
    )
    p.add_argument("--batch-size", type=int, help="windows per training batch (train.batch_size)")
    p.add_argument("--lr", type=float, help="learning rate (train.lr)")
    p.add_argument("--seed", type=int, help="seed of weights, shuffling and dropout (train.seed)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--graph", help="your own data: edge list (from,to,weight) or adjacency CSV")
    p.add_argument("--freq", help="your own data: sampling interval, e.g. 15min")
    p.add_argument(
        "--null-value",
        choices=("zero", "nan", "none"),
        help="your own data: what marks a missing reading (0 is real in flow/count data)",
    )
    p.add_argument("--config", help="YAML file with data/model/train/tracking sections")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set model.params.hidden=32",
    )
    p.add_argument(
        "--resume", metavar="RUN_ID", help="continue a killed run from its last checkpoint"
    )
    p.add_argument("--register", metavar="NAME", help="register the model in the MLflow registry")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    _output_flags(p)


def _output_flags(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    description, epilog = (" ".join(p.replace("``", "").split()) for p in __doc__.split("\n\n"))
    parser = argparse.ArgumentParser(prog="stgraph", description=description, epilog=epilog)
    commands = parser.add_subparsers(dest="command", required=True)
    _fit_parser(commands)
    p = commands.add_parser("evaluate", help="re-score a run's model on its test split")
    p.add_argument("run_id")
    p.add_argument("--data-dir", help="where the dataset's files are now")
    _output_flags(p)
    p = commands.add_parser(
        "data", help="list datasets (list), show a card (info), fetch files (download)"
    )
    data = p.add_subparsers(dest="action", required=True)
    listing = data.add_parser(
        "list", help="the datasets with a card, and whether their files are present"
    )
    listing.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    info = data.add_parser("info", help="a dataset's card")
    info.add_argument("name")
    download = data.add_parser(
        "download", help="fetch a dataset's files (sha256-checked, resumable)"
    )
    download.add_argument("name")
    download.add_argument("--data-dir")
    for sub in (p, listing, info, download):
        sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p = commands.add_parser("tasks", help="the registered tasks, their settings and models")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p = commands.add_parser(
        "models", help="the registered models and their settings, and the train/data settings"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    _serving_parsers(commands, p)
    p = commands.add_parser("runs", help="local checkpoints of fits (what --resume reads)")
    runs = p.add_subparsers(dest="action", required=True)
    clean = runs.add_parser(
        "clean",
        help="remove the checkpoints of runs that are not RUNNING (FINISHED runs remove their own)",
    )
    clean.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="only checkpoints last written at least DAYS days ago",
    )
    clean.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    _output_flags(clean)
    return parser


def _serving_parsers(commands, models) -> None:
    """``forecast``, ``job`` and ``models promote`` (see stgraph/serving/)."""
    promote = models.add_subparsers(dest="action").add_parser(
        "promote", help="point a registry alias (e.g. prod) at a model version"
    )
    for name in ("name", "version", "alias"):
        promote.add_argument(name)
    p = commands.add_parser("forecast", help="forecast from recent history with a logged model")
    p.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="history: wide or long CSV/Parquet")
    source.add_argument("--dataset", help="history: a dataset card's series")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--as-of", help="last timestamp to use (default: the input's last)")
    p.add_argument("--output", required=True, help="forecast table to write (.parquet or .csv)")
    p = commands.add_parser("job", help="run, backfill and score forecast jobs (pipelines/jobs)")
    job = p.add_subparsers(dest="action", required=True)
    run = job.add_parser("run", help="forecast one tick")
    run.add_argument("--as-of", help="the tick (default: the input's last timestamp)")
    backfill = job.add_parser("backfill", help="every tick of a range; resumable")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    score = job.add_parser(
        "score", help="print and log the realised MAE of past forecasts per horizon"
    )
    for sub in (run, backfill, score):
        sub.add_argument("name", help="job name in pipelines/jobs, or a job YAML file")
    for sub in (run, backfill):
        sub.add_argument("--force", action="store_true", help="rewrite complete outputs too")
    for sub in (promote, commands.choices["forecast"], run, backfill, score):
        sub.add_argument(
            "--json", action="store_true", help="print one JSON object as the last line"
        )
        sub.add_argument("--debug", action="store_true", help="show tracebacks")


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
        print(f"{'name':<14} {'domain':<9} {'files':<9} title")
        for row in rows:
            print(f"{row['name']:<14} {row['domain']:<9} {row['files']:<9} {row['title']}")
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
    from stgraph.serving.run import forecast_command

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


def _print_summary(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The human-readable result on stdout (``--json`` prints the JSON object instead)."""
    if args.command in ("fit", "evaluate"):
        print(f"run {result['run_id']}  {result['model']} on {result['dataset']}  (test split)")
        for line in metrics_table(result["test"]):
            print(f"  {line}")
    elif args.command == "job" and args.action == "score":
        for line in score_table(result):
            print(line)
    elif args.command == "runs":
        for line in clean_report(result):
            print(line)


def score_table(result: dict[str, Any]) -> list[str]:
    """``stgraph job score``: the realised MAE and the scored rows per horizon step."""
    lines = [
        f"job {result['job']}: {result['scored_rows']} of {result['forecast_rows']} forecast "
        f"rows scored, from {result['forecast_files']} files ({result['output']}); MLflow run "
        f"{result['run_id']}"
    ]
    if not result["mae_by_horizon"]:
        lines.append("  no forecast has actuals yet: nothing to score")
        return lines
    lines.append(f"  {'horizon':>7} {'mae':>10} {'rows':>8}")
    for horizon, mae in result["mae_by_horizon"].items():
        rows = result["rows_by_horizon"][horizon]
        lines.append(f"  {horizon:>7} {mae:>10.4f} {rows:>8}")
    lines.append(f"  {'all':>7} {result['realised_mae']:>10.4f} {result['scored_rows']:>8}")
    return lines


def clean_report(result: dict[str, Any]) -> list[str]:
    """``stgraph runs clean``: one line per removed folder, then the totals and what was kept."""
    verb = "would remove" if result["dry_run"] else "removed"
    lines = [
        f"{verb} {entry['run_id']}  {entry['status']:<8} {entry['bytes'] / 1e6:8.1f} MB  "
        f"last written {entry['modified']}"
        for entry in result["removed"]
    ]
    lines.append(
        f"{verb} {len(result['removed'])} checkpoint folder(s) in {result['runs_dir']}, "
        f"{result['freed_bytes'] / 1e6:.1f} MB"
    )
    reasons: dict[str, int] = {}
    for entry in result["kept"]:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    if reasons:
        lines.append(
            f"kept {len(result['kept'])}: "
            + "; ".join(f"{count} {reason}" for reason, count in reasons.items())
        )
    return lines


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """Metrics of any task as a table: ``name@k`` and ``name_avgk`` are rows by name and
    columns by ``k`` (``3``, ``avg12``); names without a step follow on one line."""
    import re

    cells: dict[str, dict[str, float]] = {}
    plain = {}
    for name, value in metrics.items():
        match = re.fullmatch(r"(.+?)(?:@(\d+)|_(avg\d+))", name)
        if match:
            cells.setdefault(match[1], {})[match[2] or match[3]] = value
        else:
            plain[name] = value
    columns = sorted(
        {c for row in cells.values() for c in row},
        key=lambda c: (c.startswith("avg"), int(c.removeprefix("avg"))),
    )
    width = max([len(n) for n in cells] + [4])
    lines = [f"{'':{width}}" + "".join(f"{c:>10}" for c in columns)] if cells else []
    for name, row in cells.items():
        values = (f"{row[c]:>10.4f}" if c in row else f"{'':>10}" for c in columns)
        lines.append(f"{name:{width}}" + "".join(values))
    if plain:
        lines.append("  ".join(f"{k} {v:.4g}" for k, v in plain.items()))
    return lines


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    if not debug:
        # MLflow's chatter (database creation, signature inference, artifact download bars) is
        # noise next to our own progress output; its own settings silence it before import.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", module="mlflow")
    try:
        result = COMMANDS[args.command](args)
    except StgraphError as exc:
        if debug:
            traceback.print_exc()
        print(f"stgraph: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # Ctrl-C raises a plain KeyboardInterrupt; the tracker turns SIGTERM into `Terminated`.
        signum = getattr(exc, "signum", None)
        if signum is None:
            print("stgraph: interrupted", file=sys.stderr)
            return 130
        print(f"stgraph: terminated by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except Exception as exc:  # internal error: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        print(
            f"stgraph: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback)",
            file=sys.stderr,
        )
        return 1
    if result is None:  # a non-zero torchrun rank: rank 0 reports
        return 0
    if getattr(args, "json", False):
        print(json.dumps(_json_safe(result)))
    else:
        _print_summary(args, result)
    return 0
