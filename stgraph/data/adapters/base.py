"""What every adapter returns, and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stgraph.data.cards import DatasetCard
from stgraph.data.series import Series
from stgraph.errors import InputError
from stgraph.registry import Registry


@dataclass(frozen=True)
class RawDataset:
    """A loaded dataset: the series plus whatever graph inputs its files carry.

    Attributes:
        series: the values, mask, timestamps and node ids.
        card: the card it was read with.
        adjacency: ``[N, N]`` weights as shipped (T-GCN CSV, DCRNN pickle), in series node order.
        distances: ``[N, N]`` road distances, ``inf`` where no road links two nodes.
    """

    series: Series
    card: DatasetCard
    adjacency: np.ndarray | None = None
    distances: np.ndarray | None = None


Adapter = Callable[[DatasetCard, Path], RawDataset]
ADAPTERS: Registry[Adapter] = Registry(
    "dataset format", packages=("stgraph.data.adapters", "stgraph.data.simulator")
)


def observed_mask(
    values: np.ndarray, null_value: str, where: str, allow_nonfinite: bool
) -> np.ndarray:
    """The observed-mask of raw ``values`` under a card's null-value rule.

    ``zero``: 0 is a missing reading (speed data); ``nan``: NaN is missing; ``none``: every entry is
    a real reading (flow and count data, where 0 is a real value). NaN/inf that the rule does not
    declare missing is an error unless ``allow_nonfinite`` (then it is masked too).
    """
    finite = np.isfinite(values)
    if null_value == "zero":
        mask = finite & (values != 0)
        bad = ~finite
    elif null_value == "nan":
        mask = finite
        bad = np.isinf(values)
    else:
        mask = finite
        bad = ~finite
    if bad.any() and not allow_nonfinite:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{where}: {int(bad.sum())} NaN/inf value(s) (first at index {first}), but the dataset "
            f"card declares null_value='{null_value}'. Clean the file, or set null_value to 'nan' "
            "if NaN marks a missing reading."
        )
    return mask
