"""The settings of the cross-section task (``task.params`` of a pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from stgraph.config import option
from stgraph.errors import InputError

FACTORS = ("alpha360", "alpha158", "returns")
TARGETS = ("zscore", "return")
EMBEDDINGS = ("netmf", "laplacian", "none")
CALENDARS = ("trading", "synthetic")
MONITORS = ("rank_ic", "ic", "rank_icir", "icir", "accuracy", "balanced_accuracy")


@dataclass
class CrossSectionConfig:
    """Windows, universe, factors, graph, loss, backtest and Stockformer's quirks."""

    window: int = option(20, "trading days in (Stockformer: 20)")
    horizon: int = option(2, "trading days out; the last is the scored signal (Qlib's label)")
    factors: str = option(
        "alpha360",
        "alpha360: 60 days of OHLCV and VWAP relative to the last close and volume, built per "
        "batch | alpha158: a vectorised Alpha158 subset, built once | returns: none (F = 0)",
    )
    zscore: str = option("plain", "per-day cross-sectional factor scaling: plain | robust | none")
    min_train_coverage: float = option(
        0.5, "keep the stocks that traded on at least this share of the training days"
    )
    target: str = option(
        "zscore",
        "regression target: zscore (each day's returns z-scored over its stocks) | return (raw "
        "daily returns, the official code's)",
    )
    regression: float = option(1.0, "weight of the regression loss term (masked MAE)")
    classification: float = option(1.0, "weight of the direction loss term (cross-entropy)")
    low: float = option(1.0, "weight of the low-frequency heads' terms (models that have them)")
    wavelet: str = option("sym2", "wavelet of the low-frequency target (pywt name)")
    graph_k: int = option(10, "neighbours per stock in the return-correlation graph")
    embedding: str = option(
        "netmf", "positional encoding of the stocks from that graph: netmf | laplacian | none"
    )
    embedding_dim: int = option(128, "its width (at most the number of stocks)")
    monitor: str = option("rank_ic", "validation metric for early stopping and model selection")
    top_k: int = option(10, "stocks held by the backtest")
    rebalance: int = option(1, "trading days between rebalances of the backtest")
    n_drop: int | None = option(None, "TopkDropout: at most this many names replaced per rebalance")
    fee: float = option(0.001, "backtest cost per unit of traded value, buys and sells")
    rolling_ic_days: int = option(20, "window of the rolling-IC plot")
    calendar: str = option(
        "trading",
        "trading: day of week and month from the real dates | synthetic: the official code's "
        "21-trading-day months (parity runs only)",
    )
    faithful_whole_period_graph: bool = option(
        False,
        "the official code's leak: the correlation graph and embedding fitted on every day, test "
        "included (parity runs only)",
    )
    faithful_zero_labels: bool = option(
        False,
        "the official code's masks: a zero return is dropped from the regression loss, and every "
        "cell (unknown returns as 'down') enters the classification loss",
    )
    faithful_windows_inside_splits: bool = option(
        False,
        "the official code's windows: validation and test inputs may not reach back into the "
        "previous split (fewer samples); by default they may, as only targets must not cross",
    )

    def __post_init__(self) -> None:
        checks = [
            (self.window >= 1 and self.horizon >= 1, "window and horizon must be positive"),
            (self.factors in FACTORS, f"factors must be one of {FACTORS}"),
            (self.zscore in ("plain", "robust", "none"), "zscore must be plain, robust or none"),
            (0.0 <= self.min_train_coverage <= 1.0, "min_train_coverage must lie in [0, 1]"),
            (self.target in TARGETS, f"target must be one of {TARGETS}"),
            (min(self.regression, self.classification, self.low) >= 0, "loss weights must be >= 0"),
            (self.graph_k >= 1, "graph_k must be positive"),
            (self.embedding in EMBEDDINGS, f"embedding must be one of {EMBEDDINGS}"),
            (self.embedding_dim >= 1, "embedding_dim must be positive"),
            (self.monitor in MONITORS, f"monitor must be one of {MONITORS}"),
            (self.top_k >= 1 and self.rebalance >= 1, "top_k and rebalance must be positive"),
            (self.n_drop is None or self.n_drop >= 1, "n_drop must be positive or null"),
            (self.fee >= 0, "fee must be >= 0"),
            (self.rolling_ic_days >= 2, "rolling_ic_days must be at least 2"),
            (self.calendar in CALENDARS, f"calendar must be one of {CALENDARS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"task.params: {message}.")
