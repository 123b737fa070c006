"""``stgraph forecast``: one prediction table from a registered model and recent data.

The call is mostly start-up: MLflow (to pin the model URI and record the run) on one side, torch
and pandas (to forecast) on the other, each about a second on a small machine. The MLflow side
runs in a child process (`Bookkeeper`) started before anything heavy is imported here, so the
two start-ups overlap instead of adding up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stgraph.serving.bookkeeper import Bookkeeper


def forecast_command(
    model_uri: str,
    output: str,
    input_file: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    """Resolve, read, validate, forecast, write atomically under the output's lock, record."""
    started = time.perf_counter()
    with Bookkeeper(model_uri) as bookkeeper:
        from stgraph.serving.output import output_format, output_lock
        from stgraph.serving.registry import load_pinned
        from stgraph.serving.run import DEFAULT_EXPERIMENT, write_locked

        path = Path(output).expanduser().absolute()
        output_format(path)  # a bad extension fails before any work
        with output_lock(path):  # held from here on, so that two calls never duplicate work
            import stgraph.serving.bundle  # noqa: F401  (torch, while the child pins the URI)
            from stgraph.runtime import configure_threads

            configure_threads()

            model = load_pinned(bookkeeper.pinned())
            data = model.predictor.read_input(input_file, dataset, data_dir)
            return write_locked(
                model, data, path, as_of, DEFAULT_EXPERIMENT, None, started, bookkeeper.record
            )
