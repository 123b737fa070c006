"""Locates the declarative folders shipped with stgraph (``datasets/`` cards, ``pipelines/``).

They live at the top of the source tree, where users read and edit them; ``stgraph/_data/`` holds
symbolic links to them so that a wheel carries them as package data.
"""

from __future__ import annotations

from pathlib import Path

_DATA = Path(__file__).resolve().parent / "_data"


def path(folder: str) -> Path:
    found = _DATA / folder
    if not found.is_dir():
        raise FileNotFoundError(f"stgraph installation is missing its '{folder}' folder")
    return found
