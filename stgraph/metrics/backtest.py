"""A top-k long-only backtest of a table of cross-sectional signals, with fees and turnover.

Row ``d`` of the ``[D, N]`` inputs is one trade date. ``returns[d]`` is what a stock bought on the
trade of row ``d`` earns until the trade of row ``d + 1`` (with Qlib's label, the signal of date
``t`` is traded at the close of ``t+1`` and earns ``close[t+2] / close[t+1] - 1``; the caller lines
this up). ``mask[d]`` is True where the stock can be traded on that trade and its return is known.

Each rebalance row (rows ``0, r, 2r, ...``) trades to new weights; between them the weights drift
with the returns. Weights are fractions of the portfolio's value; what is not invested is cash,
earning 0.

- **Plain top-k** (``n_drop=None``): hold the ``k`` best-scored stocks, ``1/k`` of the value each
  (held ones are trimmed or topped up back to equal weight).
- **TopkDropout** (``n_drop=m``, Qlib's rule): keep the holdings as they are; fill empty slots with
  the best-scored stocks not held, then swap up to ``m`` of the worst-scored sellable holdings
  for the next best candidates, each swap only when the candidate scores strictly higher. The
  freed value and any cash go equally to the stocks bought; kept holdings are not re-weighted.
  (Equal to Qlib's "sell the held stocks among the bottom ``m`` of held + ``m + free`` best
  candidates" whenever there are that many candidates; with fewer, nothing is sold unreplaced.)

Rules for what cannot be traded, chosen to flatter nothing:

- A held stock that is masked on a row is **stuck**: it cannot be sold, earns 0 on that row (its
  price is taken as frozen; a row's mask says its return is unknown) and keeps its slot and its
  weight; the other slots share the rest of the value. It is sold at the first rebalance where it
  is tradable again and not chosen.
- Only stocks with ``mask`` True and a finite score can be bought. A tradable holding with no
  score ranks worst (plain top-k sells it; TopkDropout drops it first).
- With fewer buyable stocks than free slots on a row, the portfolio holds fewer stocks, each at
  equal weight (fully invested); with none at all (or every slot stuck), the rest stays cash.
- Equal scores rank by column order (the lower column first): a 0/1 signal thus buys the first
  columns predicted up, so pass a continuous score (P(up), a regression output) instead.

Costs and turnover: ``cost[d] = fee * sum_i |w_new - w_drifted|`` (buys and sells alike; the
first row's buy-in counts) is charged as a fraction of the value at the trade, ``net = gross -
cost`` (the additive convention of Qlib's reports; the second-order ``cost * gross`` is ignored).
``turnover[d]`` is **one-way**: half of ``sum_i |w_new - w_drifted|``, so a full swap of an
invested portfolio is 1 and the first buy-in 0.5; ``cost = 2 * fee * turnover``.

The benchmark is the equal-weight universe rebalanced each row at no cost: the mean of the
returns of the masked-in stocks of the row (0 on a row with none: it holds nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stgraph.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Daily series of a backtest (``[D]`` arrays, read-only) and the settings that made them."""

    gross: np.ndarray  # portfolio return before costs
    net: np.ndarray  # gross - cost
    universe: np.ndarray  # equal-weight universe (the benchmark)
    turnover: np.ndarray  # one-way: half the sum of |weight change| at the trade
    cost: np.ndarray  # fee * sum |weight change|, as a fraction of the value
    n_held: np.ndarray  # stocks held after the trade (stuck ones included)
    nav_net: np.ndarray  # value after each row, from 1 before the first: cumprod(1 + net)
    nav_universe: np.ndarray  # cumulative product of 1 + universe
    k: int
    rebalance: int
    n_drop: int | None
    fee: float
    periods_per_year: int

    @property
    def days(self) -> int:
        return int(self.net.shape[0])

    def summary(self) -> dict[str, float]:
        """Annualised returns (geometric), Sharpe ratios (rf = 0), max drawdowns (<= 0, of the
        NAV that starts at 1), the mean daily one-way turnover, and the net annual return in
        excess of the universe's (the difference of the two annualised returns). NaN where
        undefined (see `annual_return`, `sharpe_ratio`)."""
        ppy = self.periods_per_year
        net_annual = annual_return(self.net, ppy)
        universe_annual = annual_return(self.universe, ppy)
        return {
            "annual_return_gross": annual_return(self.gross, ppy),
            "annual_return_net": net_annual,
            "total_return_net": float(np.prod(1.0 + self.net) - 1.0),
            "sharpe_net": sharpe_ratio(self.net, ppy),
            "max_drawdown_net": max_drawdown(self.net),
            "turnover": float(self.turnover.mean()),
            "annual_return_universe": universe_annual,
            "total_return_universe": float(np.prod(1.0 + self.universe) - 1.0),
            "sharpe_universe": sharpe_ratio(self.universe, ppy),
            "max_drawdown_universe": max_drawdown(self.universe),
            "excess_annual_return_net": net_annual - universe_annual,
            "days": float(self.days),
        }

    def frame(self, dates: Sequence[Any] | np.ndarray | pd.Index) -> pd.DataFrame:
        """The daily series as a DataFrame indexed by ``dates`` (one per row): columns
        ``gross``, ``net``, ``universe``, ``turnover``, ``nav_net``, ``nav_universe``."""
        import pandas as pd  # only the report and notebooks need it

        if len(dates) != self.days:
            raise InputError(f"frame(dates): got {len(dates)} dates for {self.days} backtest rows.")
        columns = ("gross", "net", "universe", "turnover", "nav_net", "nav_universe")
        index = pd.Index(dates, name="date")
        return pd.DataFrame({c: np.array(getattr(self, c)) for c in columns}, index=index)


def topk_backtest(
    scores: Any,
    returns: Any,
    mask: Any,
    *,
    k: int,
    rebalance: int = 1,
    n_drop: int | None = None,
    fee: float = 0.0,
    periods_per_year: int = 252,
) -> BacktestResult:
    """Backtest a long-only top-``k`` portfolio on ``scores``, ``returns`` (float) and ``mask``
    (bool), all ``[D, N]`` (numpy arrays or CPU tensors): see the module docstring for the rules.
    Raises `InputError` on bad shapes or settings, on a non-finite or below -100% return where
    ``mask`` is True, and when ``k`` exceeds the stocks that can be bought on some row."""
    scores, returns, mask = _check_tables(scores, returns, mask)
    _check_settings(k, rebalance, n_drop, fee, periods_per_year)
    buyable = mask & np.isfinite(scores)
    universe_size = int(buyable.any(0).sum())
    if k > universe_size:
        raise InputError(
            f"topk_backtest: k={k} exceeds the universe: only {universe_size} of its "
            f"{scores.shape[1]} stocks can be bought on some date (tradable, finite score)."
        )
    # Ranking key: unbuyable stocks (and tradable holdings without a score) rank last.
    signal = np.where(buyable, scores, -np.inf)
    earned = np.where(mask, returns, 0.0)  # masked: price frozen, earns 0
    days, stocks = scores.shape
    gross, traded, n_held = np.zeros(days), np.zeros(days), np.zeros(days, dtype=np.int64)
    weights = np.zeros(stocks)  # before the row's trade, drifted; the rest is cash
    for d in range(days):
        if d % rebalance == 0:
            if n_drop is None:
                new = _topk_weights(weights, signal[d], buyable[d], mask[d], k)
            else:
                new = _dropout_weights(weights, signal[d], buyable[d], mask[d], k, n_drop)
            traded[d] = np.abs(new - weights).sum()
            weights = new
        n_held[d] = np.count_nonzero(weights)
        gross[d] = weights @ earned[d]
        growth = 1.0 + gross[d]
        # Drift: each position grows by its return, the whole by the portfolio's.
        weights = weights * (1.0 + earned[d]) / growth if growth > 0 else np.zeros(stocks)
    cost = fee * traded
    net = gross - cost
    counts = mask.sum(1)
    universe = np.where(counts > 0, earned.sum(1) / np.maximum(counts, 1), 0.0)
    series = {
        "gross": gross,
        "net": net,
        "universe": universe,
        "turnover": traded / 2.0,
        "cost": cost,
        "n_held": n_held,
        "nav_net": np.cumprod(1.0 + net),
        "nav_universe": np.cumprod(1.0 + universe),
    }
    for array in series.values():
        array.setflags(write=False)
    return BacktestResult(
        **series,
        k=int(k),
        rebalance=int(rebalance),
        n_drop=None if n_drop is None else int(n_drop),
        fee=float(fee),
        periods_per_year=int(periods_per_year),
    )


def annual_return(returns: np.ndarray, periods_per_year: int = 252) -> float:
    """Geometric annualised return ``prod(1 + r) ** (ppy / D) - 1``; NaN when empty or when the
    growth is negative (only possible with returns below -100%)."""
    r = np.asarray(returns, dtype=np.float64)
    growth = float(np.prod(1.0 + r))
    if r.size == 0 or not growth >= 0:
        return math.nan
    return growth ** (periods_per_year / r.size) - 1.0


def sharpe_ratio(returns: np.ndarray, periods_per_year: int = 252) -> float:
    """``mean / std * sqrt(ppy)`` of the periodic returns (rf = 0, sample std, ``ddof=1``); NaN
    with fewer than 2 periods or a constant series (std 0 up to rounding)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return math.nan
    mean, std = float(r.mean()), float(r.std(ddof=1))
    if std == 0.0 or std <= 1e-12 * abs(mean):  # a constant series leaves rounding noise
        return math.nan
    return mean / std * math.sqrt(periods_per_year)


def max_drawdown(returns: np.ndarray) -> float:
    """The largest fall of the NAV ``cumprod(1 + r)`` from its running peak, as a number <= 0;
    the NAV starts at 1 before the first period, so a first-period loss counts. NaN when
    empty."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0:
        return math.nan
    nav = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return float((nav / np.maximum.accumulate(nav) - 1.0).min())


def _topk_weights(
    weights: np.ndarray, signal: np.ndarray, buyable: np.ndarray, tradable: np.ndarray, k: int
) -> np.ndarray:
    """Plain top-k: stuck holdings keep their weight and slot; the best buyable stocks share
    the rest of the value equally."""
    stuck = (weights > 0) & ~tradable
    new = np.where(stuck, weights, 0.0)
    take = min(k - int(stuck.sum()), int(buyable.sum()))
    if take > 0:
        best = np.argsort(-signal, kind="stable")[:take]  # ties: lower column first
        new[best] = (1.0 - new.sum()) / take
    return new


def _dropout_weights(
    weights: np.ndarray,
    signal: np.ndarray,
    buyable: np.ndarray,
    tradable: np.ndarray,
    k: int,
    n_drop: int,
) -> np.ndarray:
    """TopkDropout (see the module docstring): fill free slots, then swap up to ``n_drop`` of the
    worst sellable holdings for better candidates; kept holdings are not re-weighted."""
    held = weights > 0
    free = max(k - int(held.sum()), 0)  # stuck holdings occupy their slots
    candidates = np.flatnonzero(buyable & ~held)
    candidates = candidates[np.argsort(-signal[candidates], kind="stable")]
    sellable = np.flatnonzero(held & tradable)
    # Worst first; among equal scores the higher column is the worse (the reverse of buying).
    worst = sellable[np.argsort(-signal[sellable], kind="stable")][::-1]
    challengers = candidates[free : free + n_drop]
    pairs = min(len(challengers), len(worst))
    # Challengers fall and holdings rise along the lists, so the swaps that pay are a prefix.
    swaps = int((signal[challengers[:pairs]] > signal[worst[:pairs]]).sum())
    buy = np.concatenate((candidates[:free], challengers[:swaps]))
    new = weights.copy()
    new[worst[:swaps]] = 0.0
    if buy.size:
        new[buy] = (1.0 - new.sum()) / buy.size  # the freed value and the cash, shared
    return new


def _check_tables(scores: Any, returns: Any, mask: Any) -> tuple[np.ndarray, ...]:
    scores = np.asarray(scores, dtype=np.float64)
    returns = np.asarray(returns, dtype=np.float64)
    mask = np.asarray(mask)
    if scores.ndim != 2 or scores.shape != returns.shape or scores.shape != mask.shape:
        raise InputError(
            f"topk_backtest: scores, returns and mask must all be [D, N] of one shape, got "
            f"{scores.shape}, {returns.shape} and {mask.shape}."
        )
    if mask.dtype != np.bool_:
        raise InputError(f"topk_backtest: mask must be boolean, got dtype {mask.dtype}.")
    if 0 in scores.shape:
        raise InputError(f"topk_backtest: no dates or no stocks (shape {scores.shape}).")
    known = returns[mask]
    if not np.isfinite(known).all() or bool((known < -1.0).any()):
        raise InputError(
            "topk_backtest: returns must be finite and >= -1 wherever mask is True (mask out "
            "the stocks whose return is unknown)."
        )
    return scores, returns, mask


def _check_settings(
    k: int, rebalance: int, n_drop: int | None, fee: float, periods_per_year: int
) -> None:
    def whole(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(k) or k < 1:
        raise InputError(f"topk_backtest: k must be an integer >= 1, got {k!r}.")
    if not whole(rebalance) or rebalance < 1:
        raise InputError(f"topk_backtest: rebalance must be an integer >= 1, got {rebalance!r}.")
    if n_drop is not None and (not whole(n_drop) or not 0 <= n_drop <= k):
        raise InputError(
            f"topk_backtest: n_drop must be None or an integer in [0, k={k}], got {n_drop!r}."
        )
    if not (isinstance(fee, (int, float)) and math.isfinite(fee) and fee >= 0):
        raise InputError(f"topk_backtest: fee must be a finite number >= 0, got {fee!r}.")
    if not whole(periods_per_year) or periods_per_year < 1:
        raise InputError(
            f"topk_backtest: periods_per_year must be an integer >= 1, got {periods_per_year!r}."
        )
