"""Split-level metrics: sums and counts accumulated over every batch, computed once at the end.

- :mod:`stgraph.metrics.forecast`: masked MAE / RMSE / MAPE per horizon step (``ForecastMetrics``).
- :mod:`stgraph.metrics.ranking`: Acc@k / NDCG@k / MRR for next-location prediction
  (``RankingMetrics``).
- :mod:`stgraph.metrics.finance`: daily cross-sectional IC / RankIC, their std and ICIR
  (``DailyICMetrics``); directional accuracy with its majority and balanced baselines
  (``DirectionMetrics``).
- :mod:`stgraph.metrics.backtest`: a top-k / TopkDropout long-only backtest with fees and
  turnover over a whole ``[D, N]`` signal table (``topk_backtest`` -> ``BacktestResult``), and
  the ``annual_return`` / ``sharpe_ratio`` / ``max_drawdown`` it reports. Not an accumulator: it
  needs every date in order, so it runs once on the gathered predictions.

Every accumulator follows :class:`~stgraph.metrics.base.SplitMetrics`: ``update(...)`` per batch,
``state()`` / ``load_state()`` for a cross-process all-reduce (the state is a sum, so summing the
states of shards gives the state of the whole split), and ``compute()`` for named results.
"""

from stgraph.metrics.backtest import (
    BacktestResult,
    annual_return,
    max_drawdown,
    sharpe_ratio,
    topk_backtest,
)
from stgraph.metrics.base import SplitMetrics
from stgraph.metrics.finance import DailyICMetrics, DirectionMetrics
from stgraph.metrics.forecast import DEFAULT_MAPE_THRESHOLD, METRICS, ForecastMetrics, mlflow_key
from stgraph.metrics.ranking import RankingMetrics

__all__ = [
    "DEFAULT_MAPE_THRESHOLD",
    "METRICS",
    "BacktestResult",
    "DailyICMetrics",
    "DirectionMetrics",
    "ForecastMetrics",
    "RankingMetrics",
    "SplitMetrics",
    "annual_return",
    "max_drawdown",
    "mlflow_key",
    "sharpe_ratio",
    "topk_backtest",
]
