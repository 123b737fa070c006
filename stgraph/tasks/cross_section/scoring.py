"""What the cross-section task keeps of a model's answer (`CrossSectionPrediction`: the signal
step of every stock on every date) and the split's metrics (`CrossSectionMetrics`): the daily IC
and RankIC with their IRs, direction accuracy next to the majority rate, and a top-k backtest net
of fees against the equal-weight universe.

The metrics keep one ``[T, N]`` table per quantity over the panel's days. Each date is filled by
exactly one batch (and one DDP rank), so the tables of several shards add up to the whole split's:
the state all-reduces by sum like every other task's, and the backtest, which needs the dates in
order, runs once on the whole table in `compute`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stgraph.metrics.backtest import BacktestResult, topk_backtest
from stgraph.metrics.finance import DailyICMetrics, DirectionMetrics
from stgraph.tasks.base import Tensors
from stgraph.tasks.cross_section.batch import CrossSectionBatch, CrossSectionOutput

# Rows of the metrics state: the signal, the realised return, the predicted direction (1 = up),
# the mask (1 where the stock is scored on that date) and whether it could be bought.
_SCORE, _RETURN, _UP, _MASK, _TRADABLE = range(5)


@dataclass(frozen=True)
class CrossSectionPrediction(Tensors):
    """Per prediction date (``[B]``) and stock (``[B, N]``): the model's ``score`` of the signal
    step, its predicted direction ``up``, the realised signal-step ``returns`` (0 where unknown),
    the ``mask`` of the stocks scored (traded on the date, return known) and the ``tradable``
    ones: traded on the date and on the day the signal is traded (known then, unlike whether
    the return will be)."""

    anchor: torch.Tensor
    score: torch.Tensor
    up: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    tradable: torch.Tensor


def make_prediction(
    output: CrossSectionOutput, batch: CrossSectionBatch, step: int
) -> CrossSectionPrediction:
    """The signal step ``step`` (0-based) of ``output``; the direction from the logits, or from
    the sign of the score for a model without a direction head."""
    score = output.score[:, step].float()
    if output.logits is not None:
        logits = output.logits[:, step].float()
        up = logits[..., 1] > logits[..., 0]
    else:
        up = score > 0
    targets = batch.targets
    # The signal of date t is traded at the close of t + step; for step >= 1 the mask of the
    # step before says the stock traded on t and on that day (and on t + step - 1).
    tradable = targets.mask[:, step - 1] if step >= 1 else batch.inputs.observed[:, -1]
    return CrossSectionPrediction(
        anchor=batch.inputs.anchor,
        score=score,
        up=up,
        returns=targets.returns[:, step],
        mask=targets.mask[:, step],
        tradable=tradable,
    )


class CrossSectionMetrics:
    """IC / RankIC (`DailyICMetrics`), direction (`DirectionMetrics`) and the backtest
    (`stgraph.metrics.backtest`) of a split, from per-date tables.

    Args:
        num_days, num_stocks: the panel's shape (the tables' size).
        top_k, rebalance, n_drop, fee: the backtest's settings.
    """

    def __init__(
        self,
        num_days: int,
        num_stocks: int,
        top_k: int = 10,
        rebalance: int = 1,
        n_drop: int | None = None,
        fee: float = 0.001,
    ) -> None:
        self.top_k, self.rebalance, self.n_drop, self.fee = top_k, rebalance, n_drop, fee
        self._table = torch.zeros(5, num_days, num_stocks, dtype=torch.float64)

    @torch.no_grad()
    def update(self, prediction: CrossSectionPrediction) -> None:
        days = prediction.anchor.cpu()
        for row, values in (
            (_SCORE, prediction.score),
            (_RETURN, prediction.returns),
            (_UP, prediction.up),
            (_MASK, prediction.mask),
            (_TRADABLE, prediction.tradable),
        ):
            self._table[row, days] = values.detach().cpu().to(torch.float64)

    def state(self) -> torch.Tensor:
        return self._table.clone()

    def load_state(self, state: torch.Tensor) -> None:
        self._table = state.detach().to("cpu", torch.float64).reshape(self._table.shape).clone()

    def dated_tables(self) -> dict[str, np.ndarray]:
        """The scored dates (``days``, indices into the panel) and their ``[D, N]`` tables:
        ``score`` (NaN where unscored), ``returns``, ``mask`` and ``tradable``."""
        mask = self._table[_MASK] > 0.5
        days = torch.nonzero(mask.any(1)).flatten()
        table = self._table[:, days]
        mask = mask[days]
        return {
            "days": days.numpy(),
            "score": table[_SCORE].masked_fill(~mask, float("nan")).numpy(),
            "returns": table[_RETURN].numpy(),
            "mask": mask.numpy(),
            "tradable": (table[_TRADABLE] > 0.5).numpy(),
        }

    def backtest(self) -> BacktestResult | None:
        """The top-k backtest of the scored dates: stocks are bought where tradable on the
        trade day; one whose return turns out unknown (suspended the day after) earns 0."""
        tables = self.dated_tables()
        if len(tables["days"]) == 0:
            return None
        score = np.where(tables["tradable"], self._table[_SCORE, tables["days"]].numpy(), np.nan)
        return topk_backtest(
            score,
            tables["returns"],
            tables["tradable"],
            k=self.top_k,
            rebalance=self.rebalance,
            n_drop=self.n_drop,
            fee=self.fee,
        )

    def compute(self) -> dict[str, float]:
        mask = self._table[_MASK] > 0.5
        days = mask.any(1)
        ic = DailyICMetrics()
        direction = DirectionMetrics()
        if bool(days.any()):
            table = self._table[:, days]
            mask = mask[days]
            ic.update(table[_SCORE], table[_RETURN], mask)
            direction.update(table[_UP] > 0.5, table[_RETURN] > 0, mask)
        results = {**ic.compute(), **direction.compute()}
        result = self.backtest()
        if result is not None:
            results.update(result.summary())
        return results
