"""Split-level metrics: sums and counts accumulated over every batch, computed once at the end.

- :mod:`stgraph.metrics.forecast`: masked MAE / RMSE / MAPE per horizon step (``ForecastMetrics``).
- :mod:`stgraph.metrics.ranking`: Acc@k / NDCG@k / MRR for next-location prediction
  (``RankingMetrics``).
- :mod:`stgraph.metrics.finance`: daily cross-sectional IC / RankIC, their std and ICIR
  (``DailyICMetrics``).

Every accumulator follows :class:`~stgraph.metrics.base.SplitMetrics`: ``update(...)`` per batch,
``state()`` / ``load_state()`` for a cross-process all-reduce (the state is a sum, so summing the
states of shards gives the state of the whole split), and ``compute()`` for named results.
"""

from stgraph.metrics.base import SplitMetrics
from stgraph.metrics.finance import DailyICMetrics
from stgraph.metrics.forecast import DEFAULT_MAPE_THRESHOLD, METRICS, ForecastMetrics, mlflow_key
from stgraph.metrics.ranking import RankingMetrics

__all__ = [
    "DEFAULT_MAPE_THRESHOLD",
    "METRICS",
    "DailyICMetrics",
    "ForecastMetrics",
    "RankingMetrics",
    "SplitMetrics",
    "mlflow_key",
]
