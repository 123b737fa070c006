"""The MLflow side of one ``stgraph forecast`` call, in a child process beside the forecast.

A forecast call needs MLflow twice: to pin the model URI to a registry version (and fetch it into
the local cache once), and to record the call as a run. Importing MLflow and opening its store
costs about as much as importing torch and pandas, which the forecast itself needs; done one after
the other they set the call's latency. So the call starts this child first, which imports MLflow,
pins the URI and prepares the run record while the parent imports torch and pandas, and then
records the run once the parent has written the forecast. On two cores the two imports overlap.

The protocol is one JSON line each way, twice, over the child's stdin and stdout:

1. parent -> ``{"uri": ...}``; child -> ``{"bundle", "name", "version", "run_id"}`` or
   ``{"error", "exit_code"}`` (an `InputError`, e.g. an unknown alias).
2. parent -> ``{"experiment", "job", "summary", "metrics"}``; child -> ``{"run_id"}`` or
   ``{"error", "exit_code"}``. End of input instead (the forecast failed): the child exits.

Anything else the child prints (a warning) goes to stderr, which it shares with the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Any

from stgraph.errors import InputError, StgraphError


class Bookkeeper:
    """The child process, seen from the forecast call. Use it as a context manager: on leaving,
    the child is told to stop and is waited for (killed after a grace period)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stgraph.serving.bookkeeper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        self._send({"uri": uri})

    def __enter__(self) -> Bookkeeper:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is not None and self.process.poll() is None:
            # The call failed before its run was recorded: what the child may be doing (pinning,
            # filling the model cache in a temporary folder) is safe to cut short.
            self.process.kill()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pinned(self) -> dict[str, Any]:
        """What the URI points at now: ``bundle`` (its verified file in the model cache),
        ``name``, ``version``, ``run_id``."""
        return self._receive()

    def record(self, experiment: str, job: str | None, summary: dict, metrics: dict) -> str:
        """Record the call as a FINISHED run; its id."""
        self._send({"experiment": experiment, "job": job, "summary": summary, "metrics": metrics})
        return self._receive()["run_id"]

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the MLflow bookkeeping process ended early (exit code {code})")
        answer = json.loads(line)
        if "error" in answer:
            error = InputError(answer["error"])
            error.exit_code = answer["exit_code"]
            raise error
        return answer


def log_run(
    experiment: str, job: str | None, summary: dict[str, Any], metrics: dict[str, float]
) -> str:
    """One FINISHED MLflow run per forecast call, logged after the output is in place.

    Created, logged and ended in three transactions (`record_run`), not through the fluent API
    whose run-context plugins import GitPython and run git on every call.
    """
    from stgraph import __version__
    from stgraph.tracking.records import record_run

    tags = {"stgraph.version": __version__, "stgraph.kind": "forecast"}
    if job:
        tags["stgraph.job"] = job
    return record_run(
        experiment,
        f"{job or 'forecast'} {summary['as_of']}",
        params={k: "" if v is None else str(v) for k, v in summary.items()},
        metrics=metrics,
        tags=tags,
    )


def _answer(message: dict[str, Any]) -> None:
    sys.__stdout__.write(json.dumps(message) + "\n")
    sys.__stdout__.flush()


def _serve() -> int:
    """The child: pin, answer, wait for the record request, record, answer."""
    sys.stdout = sys.stderr  # keep the protocol channel free of anything imported code prints
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    from stgraph.serving.registry import pin_and_cache

    request = sys.stdin.readline()
    if not request:
        return 0
    try:
        _answer(pin_and_cache(json.loads(request)["uri"]))
        request = sys.stdin.readline()
        if not request:  # the forecast failed: nothing to record
            return 0
        record = json.loads(request)
        _answer({"run_id": log_run(**record)})
    except StgraphError as exc:
        _answer({"error": str(exc), "exit_code": exc.exit_code})
    return 0


if __name__ == "__main__":
    code = _serve()
    # Everything is committed and answered. A normal exit would unload MLflow and SQLAlchemy and
    # run MLflow's at-exit hooks: 0.6-0.8 s that the forecast call would wait for, for nothing.
    sys.stderr.flush()
    os._exit(code)
