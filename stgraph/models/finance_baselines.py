"""Honest cross-section baselines for stock ranking: price momentum, a closed-form ridge
regression on the factors, and a per-stock MLP over the factors and recent returns.

They read the same `CrossSectionInputs` as Stockformer and answer a `CrossSectionOutput`, so
IC, RankIC, direction accuracy and the backtest compare them on equal terms. Momentum and ridge
have nothing to learn by gradient (``trainable = False``); ridge fits its weights in closed form
in `Ridge.fit_train`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from stgraph.config import option
from stgraph.errors import InputError
from stgraph.models.base import MODELS, CrossSectionModel, ModelConfig
from stgraph.tasks.cross_section.batch import (
    CrossSectionBatch,
    CrossSectionInputs,
    CrossSectionOutput,
    StockContext,
)


def _check_days(name: str, days: int, context: StockContext) -> None:
    if not 1 <= days <= context.window:
        raise ValueError(
            f"{name} = {days} must be between 1 and the input window ({context.window})"
        )


def last_factors(inputs: CrossSectionInputs, days: int) -> torch.Tensor:
    """``[B, N, days * F]``: each stock's factors of the last ``days`` input days, oldest first."""
    factors = inputs.factors[:, -days:]  # [B, days, N, F]
    b, _, n, _ = factors.shape
    return factors.permute(0, 2, 1, 3).reshape(b, n, -1)


# ---------------------------------------------------------------------------------- momentum
@dataclass
class MomentumConfig(ModelConfig):
    lookback: int = option(20, "input days whose returns are compounded (at most the window)")
    min_days: int | None = option(
        None, "fewest observed days in the lookback for a nonzero score (None: half the lookback)"
    )


@MODELS.register("momentum")
class Momentum(CrossSectionModel):
    """Price momentum (Jegadeesh and Titman, J. Finance 1993): each stock scores its compounded
    return over the last input days.

    The score is ``prod(1 + r) - 1`` over the observed days of the last ``lookback`` input days
    (an unobserved day's return is 0, so it adds nothing), the same for every target step; a
    stock observed on fewer than ``min_days`` of them scores 0, the cross-section's neutral
    value, rather than a return compounded from a day or two. The score is a raw return, not in
    the units of a z-scored ``target``: only its order across stocks is meaningful (IC, RankIC,
    the backtest), and direction metrics read its sign. No direction head (``logits`` None).
    """

    config_class = MomentumConfig
    trainable = False

    def __init__(self, config: MomentumConfig, context: StockContext) -> None:
        super().__init__(config, context)
        _check_days("lookback", config.lookback, context)
        half = (config.lookback + 1) // 2
        self.min_days = half if config.min_days is None else config.min_days
        if not 0 <= self.min_days <= config.lookback:
            raise ValueError(
                f"min_days = {self.min_days} must be between 0 and lookback ({config.lookback})"
            )

    def forward(self, inputs: CrossSectionInputs) -> CrossSectionOutput:
        lookback = self.config.lookback
        observed = inputs.observed[:, -lookback:]
        returns = torch.where(observed, inputs.returns[:, -lookback:], 0.0)
        score = torch.prod(1 + returns, dim=1) - 1  # [B, N]
        score = torch.where(observed.sum(dim=1) >= self.min_days, score, 0.0)
        return CrossSectionOutput(score[:, None].expand(-1, self.context.horizon, -1))


# ---------------------------------------------------------------------------------- ridge
class BatchSource(Protocol):
    """What `Ridge.fit_train` reads: the task's training samples as batches."""

    def batches(self, batch_size: int) -> Iterator[CrossSectionBatch]: ...


@dataclass
class RidgeConfig(ModelConfig):
    days: int = option(1, "input days whose factors are the features (the last ones)")
    alpha: float = option(1.0, "L2 penalty on the weights (not the intercept), on summed squares")
    fit_batch_size: int = option(32, "prediction dates per batch while accumulating the fit")


@MODELS.register("ridge")
class Ridge(CrossSectionModel):
    """Ridge regression (Hoerl and Kennard, Technometrics 1970) of each target step on the
    factors of the last input days, fitted in closed form on the training samples.

    Per step ``h`` it minimises ``sum (y - X w_h - b_h)^2 + alpha |w_h|^2`` over the cells of
    ``targets.mask`` (stocks that traded on the prediction date with a known return), with ``y``
    the task's ``target`` and an unpenalised intercept ``b_h``. The normal equations are summed
    batch by batch in float64, so the fit costs one pass over the training samples and memory
    quadratic in the feature count only; the penalty is on the summed (not averaged) squared
    errors, as in scikit-learn. No direction head (``logits`` None).
    """

    config_class = RidgeConfig
    trainable = False

    def __init__(self, config: RidgeConfig, context: StockContext) -> None:
        super().__init__(config, context)
        _check_days("days", config.days, context)
        if config.alpha < 0:
            raise ValueError(f"alpha = {config.alpha} must be at least 0")
        if config.fit_batch_size < 1:
            raise ValueError(f"fit_batch_size = {config.fit_batch_size} must be at least 1")
        features = config.days * context.num_factors
        self.register_buffer("weight", torch.zeros(context.horizon, features))
        self.register_buffer("bias", torch.zeros(context.horizon))

    def fit_train(self, train: BatchSource) -> None:  # type: ignore[override]
        """Fit on ``train.batches(batch_size)``: the training `CrossSectionBatch`es, whose
        ``targets.target`` and ``targets.mask`` (``[B, H, N]``) the fit reads."""
        size = self.weight.shape[1] + 1  # features and the intercept's column of ones
        gram = torch.zeros(self.context.horizon, size, size, dtype=torch.float64)
        moment = torch.zeros(self.context.horizon, size, dtype=torch.float64)
        for batch in train.batches(self.config.fit_batch_size):
            x = last_factors(batch.inputs, self.config.days).detach().cpu().double()
            x = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # [B, N, D + 1]
            mask = batch.targets.mask.detach().cpu().double()  # [B, H, N]
            y = batch.targets.target.detach().cpu().double() * mask  # masked cells drop out
            gram += torch.einsum("bnd,bhn,bne->hde", x, mask, x)
            moment += torch.einsum("bnd,bhn->hd", x, y)
        if not gram[:, -1, -1].any():
            raise InputError("model 'ridge': no training sample has a known target to fit on")
        penalty = torch.full((size,), float(self.config.alpha), dtype=torch.float64)
        penalty[-1] = 0.0  # the intercept is not shrunk
        # lstsq rather than solve: with alpha = 0 (or a step without data) the system may be
        # singular, and the minimum-norm solution is then the natural answer.
        solution = torch.linalg.lstsq(gram + torch.diag(penalty), moment[..., None]).solution
        self.weight.copy_(solution[:, :-1, 0])
        self.bias.copy_(solution[:, -1, 0])

    def forward(self, inputs: CrossSectionInputs) -> CrossSectionOutput:
        x = last_factors(inputs, self.config.days)
        score = torch.einsum("bnd,hd->bhn", x, self.weight.to(x.dtype)) + self.bias[:, None]
        return CrossSectionOutput(score)


# ---------------------------------------------------------------------------------- mlp
@dataclass
class FinanceMLPConfig(ModelConfig):
    days: int = option(1, "input days whose factors are read (the last ones)")
    return_days: int = option(20, "last input days whose returns are read (0: none)")
    hidden: int = option(64, "hidden width")
    layers: int = option(2, "hidden layers")
    dropout: float = option(0.1, "dropout after each hidden layer")


def cross_zscore(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, W, N]`` z-scored over each day's observed stocks (0 where unobserved)."""
    weight = observed.to(x.dtype)
    count = weight.sum(dim=-1, keepdim=True).clamp_min(1)
    mean = (x * weight).sum(dim=-1, keepdim=True) / count
    var = ((x - mean) ** 2 * weight).sum(dim=-1, keepdim=True) / count
    return (x - mean) / var.sqrt().clamp_min(1e-8) * weight


@MODELS.register("mlp")
class FinanceMLP(CrossSectionModel):
    """A multilayer perceptron shared by all stocks: one stock's factors of the last input
    days and its recent daily returns in, a regression score and down/up logits per step out.

    The returns are z-scored over each day's observed stocks, like the factors, so that they
    weigh as much as a factor does (raw daily returns are about a hundred times smaller). Apart
    from that per-day scaling, stocks do not see one another: the control for Stockformer's
    attention across stocks.
    """

    config_class = FinanceMLPConfig

    def __init__(self, config: FinanceMLPConfig, context: StockContext) -> None:
        super().__init__(config, context)
        c = config
        _check_days("days", c.days, context)
        if not 0 <= c.return_days <= context.window:
            raise ValueError(
                f"return_days = {c.return_days} must be between 0 and the input window "
                f"({context.window})"
            )
        if c.hidden < 1 or c.layers < 1:
            raise ValueError(f"hidden = {c.hidden} and layers = {c.layers} must be at least 1")
        if not 0 <= c.dropout < 1:
            raise ValueError(f"dropout = {c.dropout} must be in [0, 1)")
        width = c.days * context.num_factors + c.return_days
        blocks: list[nn.Module] = []
        for _ in range(c.layers):
            blocks += [nn.Linear(width, c.hidden), nn.ReLU(), nn.Dropout(c.dropout)]
            width = c.hidden
        self.body = nn.Sequential(*blocks)
        self.score_head = nn.Linear(c.hidden, context.horizon)
        self.logit_head = nn.Linear(c.hidden, context.horizon * 2)

    def forward(self, inputs: CrossSectionInputs) -> CrossSectionOutput:
        parts = [last_factors(inputs, self.config.days)]
        k = self.config.return_days
        if k:
            returns = cross_zscore(inputs.returns[:, -k:], inputs.observed[:, -k:])
            parts.append(returns.transpose(1, 2))  # [B, N, k]
        h = self.body(torch.cat(parts, dim=-1))  # [B, N, hidden]
        b, n, _ = h.shape
        score = self.score_head(h).transpose(1, 2)  # [B, H, N]
        logits = self.logit_head(h).view(b, n, -1, 2).transpose(1, 2)  # [B, H, N, 2]
        return CrossSectionOutput(score, logits)
