"""Training checkpoints, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stgraph.atomic import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)
