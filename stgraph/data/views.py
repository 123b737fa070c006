"""Train-only views of the data: the one door through which fitted statistics see data.

Scalers, data-driven graphs (correlation, DTW, co-occurrence), factor normalisation and a model's
fitted statistics (a historical average, a seasonal prior) receive a `TrainView`, never the whole
dataset, so nothing they compute can come from validation or test data. Each data form has its
own view: a prefix of steps here; per-user sessions or a date range for other tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stgraph.data.scaler import StandardScaler
from stgraph.data.series import Series


class TrainView:
    """Base of every task's training view (a marker: each data form defines its own fields)."""


@dataclass(frozen=True)
class SeriesTrainView(TrainView):
    """Steps ``[0, num_steps)`` of a series: every step that a training input or target touches.

    Attributes:
        series: the training steps only (a view of the arrays, not a copy).
        scaler: the task's scaling, fitted on ``series`` (models that fit statistics in the
            scaled space read it); None while the scaler itself is being fitted.
    """

    series: Series
    scaler: StandardScaler | None = None
    _full: Series | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, series: Series, num_steps: int) -> SeriesTrainView:
        if not 1 <= num_steps <= series.num_steps:
            raise ValueError(f"train steps must be in [1, {series.num_steps}], got {num_steps}")
        return cls(series.slice_steps(0, num_steps), None, series)

    @property
    def num_steps(self) -> int:
        return self.series.num_steps

    def with_scaler(self, scaler: StandardScaler) -> SeriesTrainView:
        return SeriesTrainView(self.series, scaler, self._full)

    def leaky_full_series(self) -> Series:
        """The whole series, validation and test steps included.

        Only for ``faithful`` reproductions of official code that fitted on every step (GRAM-ODE's
        DTW graph); a default must never call it.
        """
        if self._full is None:
            raise ValueError("this train view was made without the full series")
        return self._full
