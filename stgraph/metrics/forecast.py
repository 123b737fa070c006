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

# Rows of ForecastMetrics' accumulator, one column per horizon step.
_ABS, _SQ, _APE, _COUNT, _APE_COUNT, _APE_SKIPPED = range(6)

DEFAULT_MAPE_THRESHOLD = 1e-4


class ForecastMetrics:
    """Accumulates absolute, squared and absolute-percentage errors per horizon step.

    MAE and RMSE use every observed target (``mask`` True). MAPE (in %) uses the observed targets
    with ``|target| >= mape_threshold`` (and never a target of exactly 0): below that the
    percentage error is undefined (0) or meaningless (a speed of 1e-17 left over by resampling
    turns an error of 1 into 1e19 %, and one such target dominates the whole split). The default,
    ``1e-4``, is the field's convention: BasicTS's and LibCity's ``masked_mape`` both treat
    ``|target| < 1e-4`` as zero and exclude it, so MAPE compares with their published tables.
    It is an absolute threshold in the target's units (metrics are computed in original units):
    far below any real traffic speed or flow reading, far above floating-point residue. Set it to
    0 to skip exact zeros only, or raise it for series whose real values are small.

    ``compute()`` reports how many observed targets MAPE skipped over the whole split
    (``mape_skipped_targets``), so a MAPE over a small remainder of the split does not pass
    unnoticed.
    """

    def __init__(
        self,
        horizon: int,
        steps: tuple[int, ...] = (3, 6, 12),
        mape_threshold: float = DEFAULT_MAPE_THRESHOLD,
    ) -> None:
        if not (math.isfinite(mape_threshold) and mape_threshold >= 0):
            raise ValueError(f"mape_threshold must be finite and >= 0, got {mape_threshold}.")
        self.horizon = horizon
        self.steps = tuple(s for s in steps if s <= horizon)
        self.mape_threshold = float(mape_threshold)
        # abs, sq, ape sums; observed count; MAPE count; observed targets MAPE skipped
        self._sums = torch.zeros(6, horizon, dtype=torch.float64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add a batch. All tensors ``[B, H, N, F]``; ``mask`` True where the target is observed."""
        observed = mask.to(torch.bool)
        mask = mask.to(torch.float64)
        target = target.to(torch.float64)
        error = (prediction.to(torch.float64) - target) * mask
        magnitude = target.abs()
        usable = observed & (magnitude >= self.mape_threshold) & (magnitude > 0)
        ape = torch.where(usable, error.abs() / magnitude.where(usable, 1.0), 0.0)
        dims = (0, 2, 3)
        sums = torch.stack(
            [
                error.abs().sum(dims),
                error.square().sum(dims),
                ape.sum(dims),
                mask.sum(dims),
                usable.sum(dims, dtype=torch.float64),
                (observed & ~usable).sum(dims, dtype=torch.float64),
            ]
        )
        self._sums += sums.cpu()

    def state(self) -> torch.Tensor:
        """The accumulated sums as one tensor, for an all-reduce across processes."""
        return self._sums.flatten().clone()

    def load_state(self, state: torch.Tensor) -> None:
        self._sums = state.detach().to("cpu", torch.float64).reshape(6, self.horizon).clone()

    def compute(self) -> dict[str, float]:
        """``mae@h``, ``rmse@h``, ``mape@h`` for the report steps and ``*_avgH`` pooled over 1..H;
        NaN where nothing was observed. Also ``mape_skipped_targets``: the observed targets (of
        every step) that MAPE excluded as below ``mape_threshold``; it is not a per-step metric."""
        abs_sum, sq_sum, ape_sum, count, ape_count, ape_skipped = self._sums
        results: dict[str, float] = {}

        def finish(select: slice | list[int], suffix: str) -> None:
            n = float(count[select].sum())
            n_ape = float(ape_count[select].sum())
            results[f"mae{suffix}"] = float(abs_sum[select].sum()) / n if n else math.nan
            results[f"rmse{suffix}"] = math.sqrt(float(sq_sum[select].sum()) / n) if n else math.nan
            results[f"mape{suffix}"] = (
                100 * float(ape_sum[select].sum()) / n_ape if n_ape else math.nan
            )

        for step in self.steps:
            finish([step - 1], f"@{step}")
        finish(slice(None), f"_avg{self.horizon}")
        results["mape_skipped_targets"] = float(ape_skipped.sum())
        return results

    def per_step(self) -> dict[str, list[float]]:
        """Every metric at every step 1..H (for the per-horizon plot)."""
        abs_sum, sq_sum, _, count = self._sums[:4]
        n = count.clamp_min(1)
        return {"mae": (abs_sum / n).tolist(), "rmse": (sq_sum / n).sqrt().tolist()}


def mlflow_key(name: str) -> str:
    """MLflow metric names may not contain '@': ``mae@3`` is logged as ``mae_at3``."""
    return name.replace("@", "_at")
