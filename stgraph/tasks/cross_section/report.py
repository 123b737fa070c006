"""What a cross-section run reports about a scored split: the backtest's NAV net of fees against
the equal-weight universe, the rolling daily IC and RankIC, and two tables: every (date, stock)
score next to its realised return, and the backtest's daily returns and turnover."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from stgraph.tasks.base import Report
from stgraph.tasks.cross_section.scoring import CrossSectionMetrics


def _figure(**kwargs):
    """A figure outside pyplot: no display and no global backend switch (cron, CI, notebooks)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def daily_ic(score: np.ndarray, returns: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Per date (rows of the ``[D, N]`` tables): ``ic`` (Pearson) and ``rank_ic`` (Spearman)
    over the scored stocks, NaN where undefined (fewer than 2 stocks, or no spread)."""
    rows = []
    for s, r, m in zip(score, returns, mask):
        s, r = s[m], r[m]
        if len(s) < 2 or np.ptp(s) == 0 or np.ptp(r) == 0:
            rows.append((np.nan, np.nan))
            continue
        rows.append((np.corrcoef(s, r)[0, 1], scipy.stats.spearmanr(s, r).statistic))
    return pd.DataFrame(rows, columns=["ic", "rank_ic"])


def cross_section_report(task, split: str, metrics: CrossSectionMetrics, model_name: str) -> Report:
    tables = metrics.dated_tables()
    days, score, returns, mask = (tables[k] for k in ("days", "score", "returns", "mask"))
    report = Report()
    result = metrics.backtest()
    if result is None:
        return report
    dates = task.panel.series.timestamps[days]
    tickers = np.asarray(task.panel.tickers, dtype=object)
    at, stock = np.nonzero(mask)
    report.tables[f"predictions/{split}.parquet"] = pd.DataFrame(
        {
            "date": dates[at],
            "ticker": tickers[stock],
            "score": score[at, stock],
            "realised_return": returns[at, stock],
        }
    )
    config = task.config
    frame = result.frame(dates)
    report.tables[f"backtest/{split}.parquet"] = frame.reset_index()
    ic = daily_ic(score, returns, mask).set_index(dates)
    report.tables[f"ic/{split}.parquet"] = ic.reset_index(names="date")

    figure = _figure(figsize=(8, 4))
    ax = figure.subplots()
    ax.plot(frame.index, frame["nav_net"], label=f"{model_name} top-{config.top_k}, net")
    ax.plot(frame.index, frame["nav_universe"], label="equal-weight universe")
    ax.set_title(f"{task.dataset_name} {split}: NAV (fee {config.fee:g} per unit traded)")
    ax.set_ylabel("NAV")
    ax.legend()
    report.figures[f"plots/{split}_nav.png"] = figure

    figure = _figure(figsize=(8, 4))
    ax = figure.subplots()
    window = config.rolling_ic_days
    for column in ("ic", "rank_ic"):
        rolling = ic[column].rolling(window, min_periods=window // 2).mean()
        ax.plot(ic.index, rolling, label=f"{column} ({window}-day mean)")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title(f"{task.dataset_name} {split}: rolling daily IC of {model_name}")
    ax.legend()
    report.figures[f"plots/{split}_rolling_ic.png"] = figure
    return report
