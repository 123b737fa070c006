"""Where dataset files live on disk: an explicit folder, ``$STGRAPH_DATA_DIR`` or the user cache."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The user cache of stgraph: ``$STGRAPH_CACHE_DIR`` if set, else the per-OS cache folder."""
    override = os.environ.get("STGRAPH_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("stgraph"))


def resolve_data_dir(dataset_name: str, data_dir: str | Path | None = None) -> Path:
    """The folder that holds (or will hold) a dataset's files.

    Args:
        dataset_name: the card name, e.g. ``"metr-la"``.
        data_dir: ``--data-dir``: a folder holding the dataset's files directly. Wins over the rest.

    Returns:
        ``data_dir`` if given, else ``$STGRAPH_DATA_DIR/<name>``, else
        ``<cache_dir()>/datasets/<name>``. The folder is not created here.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    shared = os.environ.get("STGRAPH_DATA_DIR")
    if shared:
        return Path(shared).expanduser() / dataset_name
    return cache_dir() / "datasets" / dataset_name
