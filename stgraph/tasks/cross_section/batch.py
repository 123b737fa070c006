"""What a cross-section model reads (`CrossSectionInputs`), what it is scored on
(`CrossSectionTargets`), what it answers (`CrossSectionOutput`) and the facts of the stock panel it
is built for (`StockContext`).

A sample is one prediction date ``t`` of the whole universe: the ``W`` trading days up to and
including ``t`` in, the daily returns of the ``H`` trading days after it out. With ``H = 2`` the
last step, ``close[t+2] / close[t+1] - 1``, is Qlib's label of day ``t`` (a signal computed after
the close of ``t`` is traded at the close of ``t+1``): the task scores that step (its
``signal_step``) with IC, RankIC, direction accuracy and a backtest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stgraph.graphs.graph import Graph
from stgraph.tasks.base import Batch, ModelContext, Tensors


@dataclass(frozen=True)
class CrossSectionInputs(Tensors):
    """``B`` prediction dates, ``W`` input days, ``N`` stocks, ``F`` factors.

    Attributes:
        factors: ``[B, W, N, F]`` float32 factors of each input day, z-scored over that day's
            stocks (no other day enters); 0 where unobserved.
        returns: ``[B, W, N]`` float32 daily return ``close[d] / close[d-1] - 1`` of each input
            day (0 where either close is unobserved).
        observed: ``[B, W, N]`` bool, True where the stock traded that day.
        calendar: ``[B, W + H, 2]`` int64 calendar codes of the input and target days (the
            trading calendar is known in advance): day of week and month from the real dates,
            or the synthetic codes of Stockformer's code (see `StockContext.calendar_sizes`).
        anchor: ``[B]`` int64 index of each prediction date in the panel.
    """

    factors: torch.Tensor
    returns: torch.Tensor
    observed: torch.Tensor
    calendar: torch.Tensor
    anchor: torch.Tensor


@dataclass(frozen=True)
class CrossSectionTargets(Tensors):
    """Per date, step and stock (``[B, H, N]``).

    Attributes:
        returns: the realised daily returns of the target days (0 where unknown).
        target: what the regression head is trained on: the returns z-scored over each day's
            stocks, or the raw returns (``task.params.target``).
        low_target: the low-frequency part of ``target`` along the ``H`` steps (Stockformer's
            second regression target; a target-side transform, so no input sees it).
        up: True where the return is positive (the direction label).
        mask: True where the stock traded on the prediction date and the return is known: the
            cells the regression loss and every metric read.
        class_mask: the cells the classification loss reads (``mask``, or every cell with the
            faithful switch, where unknown returns count as "down" as in the official code).
    """

    returns: torch.Tensor
    target: torch.Tensor
    low_target: torch.Tensor
    up: torch.Tensor
    mask: torch.Tensor
    class_mask: torch.Tensor


CrossSectionBatch = Batch[CrossSectionInputs, CrossSectionTargets]


@dataclass(frozen=True)
class CrossSectionOutput:
    """What a cross-section model answers for ``B`` dates, ``H`` steps and ``N`` stocks.

    Attributes:
        score: ``[B, H, N]`` the regression head (in the units of the task's ``target``); its
            order across stocks is the ranking signal.
        logits: ``[B, H, N, 2]`` down/up logits of the direction head, or None (a model with a
            regression head only; direction metrics then use ``score > 0``).
        low_score, low_logits: Stockformer's low-frequency heads (trained on ``low_target`` and
            the direction), None for models without them.
    """

    score: torch.Tensor
    logits: torch.Tensor | None = None
    low_score: torch.Tensor | None = None
    low_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class StockContext(ModelContext):
    """Facts about the stock panel a cross-section model is built for.

    Attributes:
        num_stocks, num_factors, window, horizon: ``N``, ``F``, ``W`` and ``H`` of the inputs.
        calendar_sizes: the number of values of each of the two calendar codes.
        stock_graphs: named graphs over the stocks, fitted on training days only (``correlation``:
            top-k |rho| of daily returns; ``sector`` where the data has sectors).
        embedding: ``[N, E]`` float32 positional encoding of the stocks from the correlation graph
            (NetMF or Laplacian eigenvectors), or None.
        tickers: the stocks' names, in node order.
    """

    num_stocks: int
    num_factors: int
    window: int
    horizon: int
    calendar_sizes: tuple[int, int] = (7, 12)
    stock_graphs: dict[str, Graph] | None = None
    embedding: torch.Tensor | None = None
    tickers: tuple[str, ...] = ()

    @property
    def graphs(self) -> dict[str, Graph]:
        return dict(self.stock_graphs or {})
