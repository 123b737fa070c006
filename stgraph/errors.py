"""Errors that reach the user as one clear paragraph and exit code 2 (bad input or usage).

Anything else that escapes is an internal error (exit code 1). Raise `InputError` with a message
that names the file or key and says what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StgraphError(Exception):
    """Base class for errors stgraph reports without a traceback."""

    exit_code = 2


class InputError(StgraphError):
    """Bad data, configuration or command-line input: the user can fix it."""


class LockedError(StgraphError):
    """Another process holds the lock of the output this call would write (EX_TEMPFAIL: retry)."""

    exit_code = 75


class TrainingDiverged(StgraphError):
    """The loss became NaN or infinite."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM) raised as an interrupt, so that a run in progress ends
    KILLED like one stopped with Ctrl-C; the command line exits ``128 + signum`` (143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' hint with the closest of `choices`, or '' if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
