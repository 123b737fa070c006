"""Name -> object registries, so a model, task, dataset format or graph recipe is added by writing
one module that registers itself, never by editing an if/elif chain.

A registry made with ``packages=`` imports every module of those packages (their registrations
run) the first time a name is looked up or listed: one discovery mechanism for every registry,
and no module has to import its registry's members at its bottom (an import circle).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from stgraph.errors import InputError, did_you_mean

T = TypeVar("T")


def import_submodules(package_name: str) -> None:
    """Import every public module of ``package_name`` (recursing into sub-packages)."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            name = f"{package_name}.{module.name}"
            importlib.import_module(name)
            if module.ispkg:
                import_submodules(name)


class Registry(Generic[T]):
    """A named collection of objects (classes or functions) that fails loudly on unknown names.

    Args:
        kind: what the objects are, for error messages ("model").
        packages: modules or packages whose import registers the members, imported lazily.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._packages = packages
        self._discovered = not packages

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _discover(self) -> dict[str, T]:
        if not self._discovered:
            self._discovered = True  # first, so that a member importing the registry is fine
            for package in self._packages:
                module = importlib.import_module(package)
                if hasattr(module, "__path__"):
                    import_submodules(package)
        return self._items

    def _find(self, name: str) -> None:
        """Import the module named like ``name`` before discovering them all (``-`` read as
        ``_``, longest dash-prefix first: ``gram-ode-faithful`` tries ``gram_ode_faithful``, then
        ``gram_ode``): loading one model then skips every other model's imports (torch_geometric,
        scipy, torchdiffeq: seconds on every `stgraph forecast`)."""
        if self._discovered or name in self._items:
            return
        parts = name.split("-")
        for end in range(len(parts), 0, -1):
            stem = "_".join(parts[:end])
            if not stem.isidentifier():
                continue
            for package in self._packages:
                spec = importlib.util.find_spec(package)
                if spec is None or spec.submodule_search_locations is None:
                    continue  # a module, not a package
                if importlib.util.find_spec(f"{package}.{stem}") is not None:
                    importlib.import_module(f"{package}.{stem}")
            if name in self._items:
                return

    def get(self, name: str) -> T:
        self._find(name)
        items = self._items if name in self._items else self._discover()
        try:
            return items[name]
        except KeyError:
            known = ", ".join(sorted(items)) or "none"
            raise InputError(
                f"Unknown {self.kind} '{name}'.{did_you_mean(name, items)} Known: {known}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._discover())

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._find(name)
            if name in self._items:
                return True
        return name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
