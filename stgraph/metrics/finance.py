"""Daily cross-sectional information coefficients for stock-return forecasts.

For each date, over the stocks observed that day, the IC is the Pearson correlation between the
predicted and the realised returns and the RankIC is the Spearman correlation (the Pearson
correlation of their ranks, tied values getting their average rank, as ``scipy.stats.spearmanr``
does). Over the split, each is summarised by its mean over the days, its standard deviation over
the days (sample, ``ddof=1``, as Qlib's ``ic.std()``) and the ICIR = mean / std.

A day contributes only when its correlations are defined: at least ``min_stocks`` (default 2)
observed stocks, and neither the predictions nor the returns all equal among them. An all-masked
day, a day with one stock or a day of constant predictions contributes nothing (it is neither a 0
nor a 1 in the mean). Non-finite values count as unobserved.

`DirectionMetrics` scores up/down calls cell by cell (a stock on a date): the accuracy, next to the
two numbers it must be read against, the majority-class rate (what always calling the more common
direction scores) and the balanced accuracy (the mean of the recalls on up and on down, which is
0.5 for any constant call).
"""

from __future__ import annotations

import math

import torch

# State entries: defined days, sum and sum of squares of the IC, of the RankIC.
_DAYS, _IC, _IC_SQ, _RANK_IC, _RANK_IC_SQ = range(5)
# Direction counts: scored cells, cells up, cells called up, cells up and called up, correct calls.
_CELLS, _UP, _CALLED_UP, _TRUE_UP, _CORRECT = range(5)


class DailyICMetrics:
    """Mean, std and ICIR of the daily IC and RankIC, accumulated as sums over the days."""

    def __init__(self, min_stocks: int = 2) -> None:
        if min_stocks < 2:
            raise ValueError(f"min_stocks must be >= 2 (a correlation needs 2), got {min_stocks}.")
        self.min_stocks = int(min_stocks)
        self._sums = torch.zeros(5, dtype=torch.float64)

    @torch.no_grad()
    def update(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add whole days: ``prediction``, ``target`` (realised returns) and ``mask`` (True where
        the stock is observed that day; default: where both are finite) are ``[D, N]``, one row
        per date and one column per stock (or ``[N]`` for one date). A date must lie in a single
        row: each row is a separate day."""
        if prediction.shape != target.shape or (mask is not None and mask.shape != target.shape):
            raise ValueError(
                f"prediction, target and mask must have one shape, got {tuple(prediction.shape)}, "
                f"{tuple(target.shape)} and {None if mask is None else tuple(mask.shape)}."
            )
        if target.dim() == 1:
            prediction, target = prediction[None], target[None]
            mask = None if mask is None else mask[None]
        if target.dim() != 2:
            raise ValueError(f"expected [D, N] or [N], got {tuple(target.shape)}.")
        x, y = prediction.to(torch.float64), target.to(torch.float64)
        observed = x.isfinite() & y.isfinite()
        if mask is not None:
            observed &= mask.to(torch.bool)
        n = observed.sum(1)
        defined = (n >= self.min_stocks) & _varies(x, observed) & _varies(y, observed)
        if not bool(defined.any()):
            return
        x, y, observed = x[defined], y[defined], observed[defined]
        ic = _pearson(x, y, observed)
        rank_ic = _pearson(_average_ranks(x, observed), _average_ranks(y, observed), observed)
        sums = torch.stack(
            [
                torch.tensor(float(ic.numel()), dtype=torch.float64, device=ic.device),
                ic.sum(),
                ic.square().sum(),
                rank_ic.sum(),
                rank_ic.square().sum(),
            ]
        )
        self._sums += sums.cpu()

    def state(self) -> torch.Tensor:
        """The accumulated sums as one tensor, for an all-reduce across processes."""
        return self._sums.clone()

    def load_state(self, state: torch.Tensor) -> None:
        self._sums = state.detach().to("cpu", torch.float64).reshape(5).clone()

    def compute(self) -> dict[str, float]:
        """``ic``, ``ic_std``, ``icir``, ``rank_ic``, ``rank_ic_std``, ``rank_icir`` and
        ``ic_days`` (the days whose correlations were defined). The means are NaN without a
        defined day; the std and ICIR need two days and a nonzero std, else NaN."""
        days = float(self._sums[_DAYS])
        results: dict[str, float] = {}
        for name, total, squares in (("ic", _IC, _IC_SQ), ("rank_ic", _RANK_IC, _RANK_IC_SQ)):
            s, sq = float(self._sums[total]), float(self._sums[squares])
            mean = s / days if days else math.nan
            std = math.sqrt(max(sq - s * s / days, 0.0) / (days - 1)) if days > 1 else math.nan
            results[name] = mean
            results[f"{name}_std"] = std
            results[f"{name}ir"] = mean / std if std > 0 else math.nan
        results["ic_days"] = days
        return results


class DirectionMetrics:
    """Accuracy of up/down calls with its majority-class and balanced baselines, as counts."""

    def __init__(self) -> None:
        self._sums = torch.zeros(5, dtype=torch.float64)

    @torch.no_grad()
    def update(
        self, predicted_up: torch.Tensor, up: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add cells: ``predicted_up`` (the call) and ``up`` (the realised direction), bool or
        0/1, and ``mask`` (True where the cell is scored; default: all), of one shape, any
        number of dimensions. Non-finite values count as unscored (a NaN label is unknown)."""
        if predicted_up.shape != up.shape or (mask is not None and mask.shape != up.shape):
            raise ValueError(
                f"predicted_up, up and mask must have one shape, got {tuple(predicted_up.shape)}, "
                f"{tuple(up.shape)} and {None if mask is None else tuple(mask.shape)}."
            )
        call, truth = predicted_up.to(torch.float64), up.to(torch.float64)
        scored = call.isfinite() & truth.isfinite()
        if mask is not None:
            scored &= mask.to(torch.bool)
        call, truth = call[scored], truth[scored]
        for name, values in (("predicted_up", call), ("up", truth)):
            if bool(((values != 0) & (values != 1)).any()):
                raise ValueError(f"{name} must be bool or 0/1 where scored (threshold it first).")
        sums = torch.stack(
            [
                torch.tensor(float(truth.numel()), dtype=torch.float64, device=truth.device),
                truth.sum(),
                call.sum(),
                (call * truth).sum(),
                (call == truth).sum().to(torch.float64),
            ]
        )
        self._sums += sums.cpu()

    def state(self) -> torch.Tensor:
        """The accumulated counts as one tensor, for an all-reduce across processes."""
        return self._sums.clone()

    def load_state(self, state: torch.Tensor) -> None:
        self._sums = state.detach().to("cpu", torch.float64).reshape(5).clone()

    def compute(self) -> dict[str, float]:
        """``accuracy``, ``majority_rate`` (the share of the more common realised direction),
        ``balanced_accuracy`` (the mean recall over the directions that occur, as scikit-learn's
        ``balanced_accuracy_score``), ``up_rate`` (the share called up), ``label_up_rate`` (the
        share realised up) and ``direction_cells`` (cells scored). NaN without a scored cell."""
        cells, up, called_up, true_up, correct = (float(v) for v in self._sums)
        if not cells:
            nan = math.nan
            keys = ("accuracy", "majority_rate", "balanced_accuracy", "up_rate", "label_up_rate")
            return {**dict.fromkeys(keys, nan), "direction_cells": 0.0}
        down, true_down = cells - up, correct - true_up
        recalls = [hit / total for hit, total in ((true_up, up), (true_down, down)) if total]
        return {
            "accuracy": correct / cells,
            "majority_rate": max(up, down) / cells,
            "balanced_accuracy": sum(recalls) / len(recalls),
            "up_rate": called_up / cells,
            "label_up_rate": up / cells,
            "direction_cells": cells,
        }


def _varies(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Per row: True where the observed values are not all equal."""
    high = values.masked_fill(~observed, -math.inf).amax(1)
    low = values.masked_fill(~observed, math.inf).amin(1)
    return high > low


def _pearson(x: torch.Tensor, y: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation over the observed entries (rows where both vary)."""
    weight = observed.to(torch.float64)
    n = weight.sum(1, keepdim=True)
    x, y = x.where(observed, 0.0), y.where(observed, 0.0)
    dx = (x - (x * weight).sum(1, keepdim=True) / n) * weight
    dy = (y - (y * weight).sum(1, keepdim=True) / n) * weight
    covariance = (dx * dy).sum(1)
    scale = (dx.square().sum(1) * dy.square().sum(1)).sqrt()
    return (covariance / scale).clamp(-1.0, 1.0)


def _average_ranks(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Per row, the 1-based rank of each observed value among the observed ones, ties sharing
    their average rank (unobserved entries get meaningless ranks, ignored downstream)."""
    filled = values.masked_fill(~observed, math.inf).contiguous()  # after every observed value
    ordered = filled.sort(dim=1).values
    below = torch.searchsorted(ordered, filled, right=False)  # observed values strictly below
    through = torch.searchsorted(ordered, filled, right=True)  # ... and equal, itself included
    return (below + through + 1).to(torch.float64) / 2  # mean of ranks below+1 .. through
