"""Typed configuration: dataclasses with defaults and help text, built from dicts that may come
from YAML, pipelines and ``--set key=value``. Unknown keys are errors, never silently dropped."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stgraph.errors import InputError, did_you_mean

C = TypeVar("C")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads ``1e-5``, with no dot, as a string; YAML 1.2 and users read a
    number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads exponent-only floats (``1e-5``) as numbers."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def option(default: Any, help: str) -> Any:
    """A config field with a default and a help string (shown by ``stgraph models``)."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"help": help}
        )
    return dataclasses.field(default=default, metadata={"help": help})


def redefault(parent: type, name: str, default: Any) -> Any:
    """Field ``name`` of dataclass ``parent`` with another default and the same help (a
    faithful variant's config that changes only defaults)."""
    (found,) = (f for f in dataclasses.fields(parent) if f.name == name)
    return option(default, found.metadata["help"])


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    ``where`` is the dotted key of ``data`` as the user writes it (``"model.params"``), so that
    errors name keys the way ``--set`` and the YAML files spell them (``train.lrr``); ``""`` for
    the top level of a file.

    Raises:
        InputError: for an unknown key (with the closest known key) or a value of the wrong type.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        section = f"of '{where}'" if where else "at the top level"
        raise InputError(
            f"Unknown config key '{_key(where, unknown[0])}'.{did_you_mean(unknown[0], known)} "
            f"Known keys {section}: {', '.join(sorted(known))}."
        )
    values = {name: _coerce(hints[name], value, _key(where, name)) for name, value in data.items()}
    return cls(**values)


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise InputError(f"Config key '{where}' must be a mapping, got {value!r}.")
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except InputError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (list, tuple):
        if isinstance(value, str):
            value = load_yaml(value) if value.startswith("[") else value.split(",")
        if not isinstance(value, list | tuple):
            raise InputError(f"Config key '{where}' must be a list, got {value!r}.")
        item = args[0] if args else Any
        return origin(_coerce(item, v, where) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise InputError(f"Config key '{where}' must be a mapping, got {value!r}.")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif hint in (int, float):
        # A float field takes an int (1 -> 1.0); an int field takes neither floats nor bools.
        numeric = (int,) if hint is int else (int, float)
        if isinstance(value, numeric) and not isinstance(value, bool):
            return hint(value)
        if isinstance(value, str):
            try:
                return hint(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
    elif isinstance(value, hint):
        return value
    raise InputError(
        f"Config key '{where}' must be {getattr(hint, '__name__', hint)}, got {value!r}."
    )


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping at the top of YAML file ``path``; ``what`` names it in errors ("Job file")."""
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist.")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {path}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path}: expected a mapping at the top level.")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_path(d, "train.lr", 0.01)`` sets ``d["train"]["lr"]``, creating mappings."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise InputError(f"--set {dotted}: '{key}' is not a section.")
    node[leaf] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``; the value is read as YAML (numbers, lists, true/false)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InputError(f"--set expects key=value, got '{text}'.")
    try:
        value = load_yaml(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
