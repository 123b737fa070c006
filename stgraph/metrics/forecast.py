"""Masked forecast metrics accumulated over a whole split.

Sums and counts are accumulated per horizon step over every batch, and the metric is computed at
the end: never a mean of batch means (which over-weights batches with few observed targets), and
an all-masked batch contributes nothing instead of a perfect zero. Names are unambiguous:
``mae@3`` is the error at step 3 alone; ``mae_avg12`` pools steps 1..12.
"""

from __future__ import annotations

import math

import torch

METRICS = ("mae", "rmse", "mape")


class ForecastMetrics:
    """Accumulates absolute, squared and absolute-percentage errors per horizon step.

    MAPE (in %) skips targets equal to zero, where it is undefined (flow and count data).
    """

    def __init__(self, horizon: int, steps: tuple[int, ...] = (3, 6, 12)) -> None:
        self.horizon = horizon
        self.steps = tuple(s for s in steps if s <= horizon)
        self._sums = torch.zeros(4, horizon, dtype=torch.float64)  # abs, sq, ape, count
        self._ape_count = torch.zeros(horizon, dtype=torch.float64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add a batch. All tensors ``[B, H, N, F]``; ``mask`` True where the target is observed."""
        mask = mask.to(torch.float64)
        error = (prediction.to(torch.float64) - target.to(torch.float64)) * mask
        nonzero = mask * (target != 0)
        ape = error.abs() / target.abs().to(torch.float64).clamp_min(1e-12) * nonzero
        dims = (0, 2, 3)
        self._sums[0] += error.abs().sum(dims).cpu()
        self._sums[1] += error.square().sum(dims).cpu()
        self._sums[2] += ape.sum(dims).cpu()
        self._sums[3] += mask.sum(dims).cpu()
        self._ape_count += nonzero.sum(dims).cpu()

    def state(self) -> torch.Tensor:
        """The accumulated sums as one tensor, for an all-reduce across processes."""
        return torch.cat([self._sums.flatten(), self._ape_count])

    def load_state(self, state: torch.Tensor) -> None:
        self._sums = state[: 4 * self.horizon].reshape(4, self.horizon).clone()
        self._ape_count = state[4 * self.horizon :].clone()

    def compute(self) -> dict[str, float]:
        """``mae@h``, ``rmse@h``, ``mape@h`` for the report steps and ``*_avgH`` pooled over 1..H;
        NaN where nothing was observed."""
        abs_sum, sq_sum, ape_sum, count = self._sums
        results: dict[str, float] = {}

        def finish(select: slice | list[int], suffix: str) -> None:
            n = float(count[select].sum())
            n_ape = float(self._ape_count[select].sum())
            results[f"mae{suffix}"] = float(abs_sum[select].sum()) / n if n else math.nan
            results[f"rmse{suffix}"] = math.sqrt(float(sq_sum[select].sum()) / n) if n else math.nan
            results[f"mape{suffix}"] = (
                100 * float(ape_sum[select].sum()) / n_ape if n_ape else math.nan
            )

        for step in self.steps:
            finish([step - 1], f"@{step}")
        finish(slice(None), f"_avg{self.horizon}")
        return results

    def per_step(self) -> dict[str, list[float]]:
        """Every metric at every step 1..H (for the per-horizon plot)."""
        abs_sum, sq_sum, _, count = self._sums
        n = count.clamp_min(1)
        return {"mae": (abs_sum / n).tolist(), "rmse": (sq_sum / n).sqrt().tolist()}


def mlflow_key(name: str) -> str:
    """MLflow metric names may not contain '@': ``mae@3`` is logged as ``mae_at3``."""
    return name.replace("@", "_at")
