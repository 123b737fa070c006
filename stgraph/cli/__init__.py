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
import os
import signal
import sys
import traceback
import warnings

from stgraph.cli.commands import COMMANDS
from stgraph.cli.output import json_safe, print_summary
from stgraph.cli.parser import build_parser
from stgraph.errors import StgraphError
from stgraph.runtime import configure_threads

__all__ = ["build_parser", "console", "main"]

# Commands that compute outside a fit (which sizes its threads from train.threads); `forecast`
# sizes its own once torch is loaded, so as not to delay its start-up.
_COMPUTING = frozenset({"evaluate", "job"})
# Commands a scheduler runs every tick, which own no state that needs an orderly interpreter exit
# once they have returned: their output is written atomically and their run is recorded.
_NO_TEARDOWN = frozenset({"forecast"})


def console() -> None:
    """The ``stgraph`` console script. After a forecast it exits without the interpreter's
    teardown: unloading torch and pandas takes about 0.4 s, a sixth of the call."""
    args = build_parser().parse_args()
    code = _dispatch(args)
    if args.command in _NO_TEARDOWN:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run one command as the console script would; its exit code."""
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    debug = getattr(args, "debug", False)
    if not debug:
        # MLflow's chatter (database creation, signature inference, artifact download bars) is
        # noise next to our own progress output; its own settings silence it before import.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", module="mlflow")
    try:
        if args.command in _COMPUTING:
            configure_threads()
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
        print(json.dumps(json_safe(result)))
    else:
        print_summary(args, result)
    return 0
