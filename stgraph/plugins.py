"""Imports every module of a package so that its registrations run.

A new model or adapter is one new module in ``stgraph/models/`` or ``stgraph/data/adapters/``:
no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str) -> None:
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
