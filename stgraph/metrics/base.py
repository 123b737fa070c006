"""The interface every split-level metric accumulator follows."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class SplitMetrics(Protocol):
    """Metrics accumulated over a whole split as sums and counts, computed once at the end.

    - ``update(...)`` adds a batch (arguments depend on the task: forecasts, scores, returns).
    - ``state()`` is everything accumulated so far as one float64 tensor whose entries are sums, so
      the element-wise sum of the states of several shards (``all_reduce(SUM)``) is the state of
      the union of the shards.
    - ``load_state(state)`` replaces the accumulated sums with ``state`` (after the all-reduce).
    - ``compute()`` returns the metrics by unambiguous name (``mae@3``, ``acc@5``, ``ic``...);
      NaN where nothing was accumulated, never a made-up 0.
    """

    def update(self, *args: Any, **kwargs: Any) -> None: ...

    def state(self) -> torch.Tensor: ...

    def load_state(self, state: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...
