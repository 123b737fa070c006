"""The model bundle: one file with everything needed to serve a trained model, for any task.

It holds the task's name and what the task exported for serving (`Task.export`: scalers, ids,
the input signature), the model's name, resolved config and weights, the facts of the data the
model was built for (its `ModelContext`, graphs included) and the run's resolved config. MLflow
logs it as a pyfunc model; `load_predictor` turns it into the task's `Predictor` anywhere, without
the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stgraph.atomic import atomic_write
from stgraph.errors import InputError
from stgraph.models.base import Model, build_model
from stgraph.tasks.base import TASKS, Predictor, Task

FORMAT_VERSION = 2


def save_bundle(
    path: Path, task: Task, model: Model, model_name: str, config: dict[str, Any]
) -> None:
    """Write the bundle of ``model`` trained on ``task``; ``config`` is the run's resolved config
    (the one MLflow logs)."""
    bundle = {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "task_state": task.export(),
        "model_name": model_name,
        "model_params": config["model"]["params"],
        "context": model.context,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config,
    }
    atomic_write(path, lambda handle: torch.save(bundle, handle))


def read_bundle(path: Path | str) -> dict[str, Any]:
    """The bundle's contents, or an `InputError` naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Model bundle {path} does not exist.")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, not a torch file, or classes that no longer exist
        raise InputError(f"Model bundle {path} cannot be read: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path} is not a stgraph model bundle of format {FORMAT_VERSION} (saved by another "
            "stgraph version?); refit the model."
        )
    return bundle


def load_predictor(path: Path | str) -> Predictor:
    """The task's `Predictor` for the model in bundle ``path``.

    Raises:
        InputError: a missing, unreadable or foreign file, or weights that do not fit the model.
    """
    bundle = read_bundle(path)
    model = build_model(bundle["model_name"], bundle["model_params"], bundle["context"])
    try:
        model.load_state_dict(bundle["state_dict"])
    except RuntimeError as exc:  # missing, unexpected or reshaped weights
        reason = " ".join(line.strip() for line in str(exc).splitlines())[:500]
        raise InputError(
            f"Model bundle {path}: its weights do not fit model '{bundle['model_name']}' of this "
            f"stgraph version (saved by an older one?); refit it. {reason}"
        ) from exc
    return TASKS.get(bundle["task"]).predictor_class(bundle["task_state"], model.eval())
