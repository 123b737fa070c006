"""Dataset cards: one declarative YAML file per dataset in the top-level ``datasets/`` folder.

A card says where the files come from (URLs + sha256), how to read them (``format`` names a
registered adapter), what the target channel, frequency, units and null value are, and the
default split and graph recipe. Adding a dataset in a known format means writing one card.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from stgraph.config import read_yaml_mapping
from stgraph.errors import InputError, did_you_mean

NULL_VALUES = ("zero", "nan", "none")
EVENT_DOMAINS = ("mobility",)  # cards of event data (check-ins): no frequency, no series
# Trading-calendar data: one row per trading day, taken from the files, so no fixed frequency.
CALENDAR_DOMAINS = ("finance",)


@dataclass(frozen=True)
class SourceFile:
    """One file of a dataset: its name in the data directory and where to fetch it.

    ``instructions`` says how to get a file by hand where no direct URL exists (a zip on a
    personal site): where to download it and what to unpack.
    """

    name: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    optional: bool = False
    instructions: str = ""


@dataclass(frozen=True)
class DatasetCard:
    name: str
    format: str
    files: tuple[SourceFile, ...]
    frequency: str | None = None  # required, except in EVENT_DOMAINS and CALENDAR_DOMAINS
    target: str = "value"
    units: str = ""
    null_value: str = (
        "zero"  # zero: 0 means missing (speed); nan: NaN means missing; none: all real
    )
    allow_nonfinite: bool = False  # False: NaN/inf in the file (beyond null_value) is an error
    domain: str = "traffic"
    title: str = ""
    description: str = ""
    license: str = ""
    citation: str = ""
    start: str | None = None  # for formats without timestamps (T-GCN CSV)
    split: dict = field(default_factory=lambda: {"method": "ratio", "ratios": [0.7, 0.1, 0.2]})
    graph: dict = field(default_factory=lambda: {"method": "none"})
    options: dict = field(default_factory=dict)  # adapter-specific (channel index, file keys...)
    expected: dict = field(default_factory=dict)  # e.g. {nodes: 207, steps: 2016}
    path: Path | None = None  # where the card was read from

    def __post_init__(self) -> None:
        if self.frequency is None and self.domain not in EVENT_DOMAINS + CALENDAR_DOMAINS:
            raise InputError(
                f"Card {self.path or self.name}: frequency is required for {self.domain} data "
                "(e.g. frequency: 5min)."
            )
        if self.null_value not in NULL_VALUES:
            raise InputError(
                f"Card {self.path or self.name}: null_value must be one of {NULL_VALUES}, "
                f"got '{self.null_value}'."
            )

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> DatasetCard:
        where = path or data.get("name", "card")
        known = {f.name for f in dataclasses.fields(cls)} - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"Card {where}: unknown key(s) {unknown}.{did_you_mean(unknown[0], known)}"
            )
        files = []
        for entry in data.get("files", []):
            entry = {"name": entry} if isinstance(entry, str) else dict(entry)
            if "url" in entry:
                entry["urls"] = [entry.pop("url")]
            entry["urls"] = tuple(entry.get("urls", ()))
            files.append(SourceFile(**entry))
        try:
            return cls(**{**data, "files": tuple(files), "path": path})
        except TypeError as exc:
            raise InputError(f"Card {where}: {exc}") from None

    def file(self, name: str) -> SourceFile:
        for source in self.files:
            if source.name == name:
                return source
        raise KeyError(name)


def cards_dir() -> Path:
    """The folder with the shipped cards (``datasets/`` in the source tree and in the install)."""
    from stgraph import _shipped

    return _shipped.path("datasets")


def load_card(name: str) -> DatasetCard:
    path = cards_dir() / f"{name}.yaml"
    if not path.is_file():
        raise InputError(
            f"Unknown dataset '{name}'.{did_you_mean(name, list_cards())} "
            f"Known: {', '.join(list_cards())}. To use your own file, pass its path "
            "(a .csv or .parquet file)."
        )
    return read_card(path)


def read_card(path: Path) -> DatasetCard:
    return DatasetCard.from_dict(read_yaml_mapping(path, "Card"), path)


def list_cards() -> list[str]:
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))
