"""Progress of a training epoch: a bar on a terminal, plain lines in a log.

A redirected stderr (cron, an orchestrator, ``nohup``) gets no bar: its redraws would pile up as
one endless line. It gets a line every ``interval`` seconds instead, so a GRAM-ODE epoch of ten
minutes does not pass in silence between two epoch lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

LOG_INTERVAL = 60.0  # seconds between two progress lines in a log


class LogProgress:
    """The part of tqdm's interface the trainer uses (``update``, ``set_postfix``, a context
    manager), writing ``description: done/total batches, key value, elapsed`` at most once per
    ``interval`` seconds (`LOG_INTERVAL` by default) and never for the last batch (the epoch
    line follows it)."""

    def __init__(
        self,
        total: int,
        description: str,
        interval: float | None = None,
        file: TextIO | None = None,
    ) -> None:
        self.total, self.description = total, description
        self.interval = LOG_INTERVAL if interval is None else interval
        self.file = file if file is not None else sys.stderr
        self.done = 0
        self.postfix = ""
        self.started = self.last_line = time.monotonic()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_postfix(self, **values: object) -> None:
        self.postfix = "".join(f", {key} {value}" for key, value in values.items())

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last_line < self.interval or self.done >= self.total:
            return
        self.last_line = now
        rate = (now - self.started) / self.done
        print(
            f"{self.description}: {self.done}/{self.total} batches{self.postfix}, "
            f"{now - self.started:.0f}s (about {rate * (self.total - self.done):.0f}s to go)",
            file=self.file,
            flush=True,
        )


def progress(total: int, description: str, quiet: bool) -> tqdm | LogProgress:
    """A tqdm bar on a terminal, `LogProgress` lines otherwise, nothing when ``quiet``."""
    if not quiet and not sys.stderr.isatty():
        return LogProgress(total, description)
    return tqdm(
        total=total,
        desc=description,
        leave=False,
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
