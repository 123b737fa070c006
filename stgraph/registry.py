"""Name -> object registries, so a model, dataset format or graph recipe is added by writing one
module that registers itself, never by editing an if/elif chain."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from stgraph.errors import InputError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects (classes or functions) that fails loudly on unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._deferred: tuple[str, tuple[str, ...]] | None = None

    def defer_to(self, package: str, *extra: str) -> None:
        """Import the modules that register here on the first lookup that needs them.

        The modules of ``package`` (and the ``extra`` modules) register into this registry when
        imported. Importing them all up front costs seconds (torch_geometric, scipy) that loading
        one trained model never needs, so a lookup of ``name`` first imports the module named like
        it (``-`` read as ``_``, longest dash-prefix first: ``gram-ode-faithful`` tries
        ``gram_ode_faithful`` then ``gram_ode`` then ``gram``); only when that did not register
        ``name``, and for any listing, are all of them imported.
        """
        self._deferred = (package, extra)

    def _load(self, name: str | None) -> None:
        deferred = self._deferred
        if deferred is None or (name is not None and name in self._items):
            return
        package, extra = deferred
        if name is not None:
            parts = name.split("-")
            for end in range(len(parts), 0, -1):
                stem = "_".join(parts[:end])
                if not stem.isidentifier():
                    continue
                candidates = [f"{package}.{stem}"]
                candidates += [m for m in extra if m.rsplit(".", 1)[-1] == stem]
                for module in candidates:
                    if importlib.util.find_spec(module) is not None:
                        importlib.import_module(module)
                if name in self._items:
                    return
        from stgraph.plugins import import_submodules

        self._deferred = None
        try:
            import_submodules(package)
            for module in extra:
                importlib.import_module(module)
        except BaseException:
            self._deferred = deferred  # a failed import is retried, and reported, next time
            raise

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        self._load(name)
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise InputError(
                f"Unknown {self.kind} '{name}'.{did_you_mean(name, self._items)} Known: {known}."
            ) from None

    def names(self) -> list[str]:
        self._load(None)
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load(name)
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
