"""The argument parser of the ``stgraph`` command line (commands in `stgraph.cli.commands`)."""

from __future__ import annotations

import argparse


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
    description, epilog = (" ".join(p.replace("``", "").split()) for p in _cli_doc().split("\n\n"))
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


def _cli_doc() -> str:
    import stgraph.cli

    return stgraph.cli.__doc__ or ""
