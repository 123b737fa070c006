"""Lazy sliding windows, chronological splits and calendar features.

Nothing here copies the series per window: a sample is its anchor index ``t`` (the last input
step), and a batch is gathered from the shared arrays by index arithmetic when it is needed.

The default protocol is the field's (DCRNN) convention, so our numbers compare with published
ones: sample ``t`` has inputs at steps ``t-W+1..t`` and targets at ``t+1..t+H``, for every ``t``
from ``W-1`` to ``T-H-1``; of the ``S`` samples in time order, the first ``round(0.7 S)`` train,
the last ``round(0.2 S)`` test and the rest validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from stgraph.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Anchor indices (last input step) of the samples of each split, in time order."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    @property
    def train_steps(self) -> int:
        """Steps ``[0, train_steps)`` are the ones training inputs see: scalers and data-driven
        graphs are fitted on them alone."""
        return int(self.train[-1]) + 1


def anchors(num_steps: int, window: int, horizon: int) -> np.ndarray:
    """All anchors ``t`` with a full input window before and a full horizon after."""
    return np.arange(window - 1, num_steps - horizon, dtype=np.int64)


def split_samples(
    timestamps: pd.DatetimeIndex,
    window: int,
    horizon: int,
    method: str = "ratio",
    ratios: tuple[float, float, float] | list[float] = (0.7, 0.1, 0.2),
    val_start: str | None = None,
    test_start: str | None = None,
    within_day: bool = False,
) -> Splits:
    """Chronological train/val/test samples.

    Args:
        method: ``ratio`` (DCRNN convention: split the ``S`` samples by count, train first, test
            last) or ``date`` (a sample belongs to a split only if all its input and target steps
            fall inside it; samples straddling a boundary are dropped, so no step is shared).
        ratios: train/val/test fractions for ``ratio`` (e.g. ``(0.6, 0.2, 0.2)`` for PEMS0X).
        val_start, test_start: the first timestamps of validation and test for ``date``.
        within_day: keep only windows whose inputs and targets lie in one calendar day
            (STGCN/STTN's day-bounded windows).
    """
    num_steps = len(timestamps)
    starts = anchors(num_steps, window, horizon)
    if within_day:
        day = timestamps.normalize().asi8
        starts = starts[day[starts - window + 1] == day[starts + horizon]]
    if method == "ratio":
        if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
            raise InputError(
                f"split ratios must be three non-negative numbers summing to 1, got {list(ratios)}"
            )
        total = len(starts)
        num_train = round(ratios[0] * total)
        num_test = round(ratios[2] * total)
        parts = (
            starts[:num_train],
            starts[num_train : total - num_test],
            starts[total - num_test :],
        )
    elif method == "date":
        if val_start is None or test_start is None:
            raise InputError("split method 'date' needs split.val_start and split.test_start")
        bounds = timestamps.searchsorted(pd.DatetimeIndex([val_start, test_start]))
        first, last = starts - window + 1, starts + horizon
        edges = [0, int(bounds[0]), int(bounds[1]), num_steps]
        parts = tuple(starts[(first >= lo) & (last < hi)] for lo, hi in pairwise(edges))
    else:
        raise InputError(f"Unknown split method '{method}'. Known: ratio, date.")
    for name, part in zip(SPLITS, parts):
        if len(part) == 0:
            raise InputError(
                f"The {name} split has no windows ({num_steps} steps, window {window}, "
                f"horizon {horizon}, split method '{method}'). Use more data or a shorter window."
            )
    return Splits(*parts)


def calendar_features(timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Time of day as a fraction of the day in ``[0, 1)`` (float32) and day of week 0=Monday
    (int64), from the real timestamps."""
    seconds = (timestamps - timestamps.normalize()).total_seconds().to_numpy()
    return (seconds / 86400.0).astype(np.float32), timestamps.dayofweek.to_numpy().astype(np.int64)
