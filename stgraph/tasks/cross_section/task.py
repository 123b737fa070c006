"""The cross-section task: the last ``window`` trading days of a stock universe -> every stock's
daily returns over the next ``horizon`` days, as a regression score and an up/down direction.

One sample per prediction date (the whole universe at once, so models can attend across stocks).
Inputs are built per batch from the raw price panel (`StockPanel`): factors of each input day
z-scored over that day's stocks, daily returns and the trading calendar. The loss is Stockformer's
multi-task sum (Ma, Xue, Lu, Chen, arXiv 2401.06139): masked MAE on the regression target and
cross-entropy on the direction, for the fused heads and, for models that have them, the
low-frequency heads. Model selection watches the validation RankIC of the signal step (the last).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stgraph.config import deep_merge
from stgraph.data.config import DataConfig
from stgraph.data.views import SeriesTrainView
from stgraph.data.windows import Splits
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.nn.wavelet import WaveletSplit
from stgraph.tasks.base import TASKS, Batch, Goal, Loss, Report, Task, anchor_batches
from stgraph.tasks.cross_section.batch import (
    CrossSectionBatch,
    CrossSectionInputs,
    CrossSectionOutput,
    CrossSectionTargets,
    StockContext,
)
from stgraph.tasks.cross_section.config import CrossSectionConfig
from stgraph.tasks.cross_section.panel import StockPanel, factor_lookback, split_days
from stgraph.tasks.cross_section.predictor import StockRanker
from stgraph.tasks.cross_section.scoring import (
    CrossSectionMetrics,
    CrossSectionPrediction,
    make_prediction,
)


@dataclass(frozen=True)
class StockTrainView(SeriesTrainView):
    """The training days of the panel, and the training batches built from them alone (for
    models fitted in closed form, such as ``ridge``)."""

    task: Any = None

    def batches(self, batch_size: int) -> Iterator[CrossSectionBatch]:
        return self.task.batches("train", batch_size)


def stock_graphs(
    panel: StockPanel, days: int, config: CrossSectionConfig
) -> tuple[dict[str, Graph], torch.Tensor | None]:
    """The correlation graph of the first ``days`` days' returns (and the sector graph where the
    data has sectors), and the stocks' positional encoding from the correlation graph."""
    from stgraph.graphs import laplacian_eigenvectors
    from stgraph.graphs.stocks import correlation_topk_graph, netmf_embedding, sector_graph

    n = len(panel.tickers)
    k = min(config.graph_k, n - 1)
    graphs = {
        "correlation": correlation_topk_graph(
            panel.returns[:days], panel.return_ok[:days], k, symmetric=True
        )
    }
    sectors = panel.series.attrs.get("sectors")
    if sectors:
        graphs["sector"] = sector_graph(panel.tickers, sectors, unknown="isolate")[0]
    dim = min(config.embedding_dim, n - 1)
    embedding = None
    if config.embedding == "netmf":
        embedding = netmf_embedding(graphs["correlation"], dim)
    elif config.embedding == "laplacian":
        embedding = laplacian_eigenvectors(graphs["correlation"], dim)
    return graphs, embedding


@TASKS.register("cross-section")
class CrossSectionTask(Task):
    """Cross-sectional stock selection over a trading-calendar price panel.

    Args:
        panel: the universe's prices (already filtered to the universe).
        splits: prediction dates of train, validation and test (`split_days`).
        config: the task's settings.
    """

    name = "cross-section"
    config_class = CrossSectionConfig
    predictor_class = StockRanker
    default_model = "stockformer"
    sample_noun = "dates"

    def __init__(
        self, panel: StockPanel, splits: Splits, config: CrossSectionConfig | None = None
    ) -> None:
        self.config = config = config or CrossSectionConfig()
        self.panel, self.splits = panel, splits
        self.dataset_name = panel.series.name
        self.monitor = config.monitor
        n = len(panel.tickers)
        if n < max(config.top_k, 2):
            source = panel.series.attrs.get("source") or self.dataset_name
            raise InputError(
                f"{source}: the universe has {n} stocks, fewer than the backtest's "
                f"task.params.top_k = {config.top_k} (or 2)."
            )
        train_days = int(splits.train[-1]) + config.horizon + 1  # the last training target
        self.train_view = StockTrainView(
            panel.series.slice_steps(0, train_days), None, panel.series, task=self
        )
        graph_days = panel.num_days if config.faithful_whole_period_graph else train_days
        graphs, embedding = stock_graphs(panel, graph_days, config)
        self._calendar = panel.calendar(config.calendar == "synthetic")
        self._returns = torch.from_numpy(panel.returns)
        self._return_ok = torch.from_numpy(panel.return_ok)
        self._observed = torch.from_numpy(panel.observed)
        self._input_offsets = torch.arange(-config.window + 1, 1)
        self._target_offsets = torch.arange(1, config.horizon + 1)
        self._low = WaveletSplit(config.wavelet, 1, causal=False, mode="zero", time_dim=1)
        self.context = StockContext(
            num_stocks=n,
            num_factors=panel.num_factors(config.factors),
            window=config.window,
            horizon=config.horizon,
            calendar_sizes=(5, 50) if config.calendar == "synthetic" else (7, 12),
            stock_graphs=graphs,
            embedding=embedding,
            tickers=panel.tickers,
        )

    @classmethod
    def build(cls, data: DataConfig, config: CrossSectionConfig) -> CrossSectionTask:
        """Read the prices, split the dates, keep the universe the training days support."""
        from stgraph.data.sources import open_dataset

        if data.graph or data.graph_file:
            raise InputError(
                "data.graph and graph_file do not apply to the cross-section task: its stock "
                "graph is fitted on the training returns (task.params.graph_k, embedding)."
            )
        raw = open_dataset(data.dataset, data_dir=data.data_dir, download=data.download)
        if raw.series.calendar != "trading":
            raise InputError(
                f"{data.dataset}: the cross-section task reads daily prices on a trading "
                "calendar (a price folder or a long price table), not a regular series."
            )
        panel = StockPanel.of(raw.series)
        split = deep_merge(raw.card.split, data.split)
        if "val_start" in data.split and "method" not in data.split:
            split["method"] = "date"  # dates given (a rolling fold) over a card's ratio split
        if split.get("method") == "date":
            split.pop("ratios", None)
        split_args = {k: v for k, v in split.items() if k != "method"}
        kwargs = {
            "inside": config.faithful_windows_inside_splits,
            "lookback": factor_lookback(config.factors),
            "source": raw.series.attrs.get("source") or data.dataset,
        }
        splits = split_days(
            panel.series.timestamps,
            config.window,
            config.horizon,
            split.get("method", "ratio"),
            **split_args,
            **kwargs,
        )
        train_days = int(splits.train[-1]) + config.horizon + 1
        universe = panel.universe(train_days, config.min_train_coverage)
        if len(universe) < panel.observed.shape[1]:
            panel = panel.select(universe)
        return cls(panel, splits, config)

    # ------------------------------------------------------------------ batches
    def num_samples(self, split: str) -> int:
        return len(self.splits[split])

    def batch(self, anchors: torch.Tensor | np.ndarray) -> CrossSectionBatch:
        """The samples of the prediction dates ``anchors``; the factors of each distinct input
        day are built once per batch."""
        config = self.config
        anchors = torch.as_tensor(anchors, dtype=torch.long)
        days = anchors[:, None] + self._input_offsets  # [B, W]
        unique, where = torch.unique(days, return_inverse=True)
        factors = self.panel.factors(unique.numpy(), config.factors, config.zscore)[where]
        targets = anchors[:, None] + self._target_offsets  # [B, H]
        returns = self._returns[targets]
        mask = self._return_ok[targets] & self._observed[anchors][:, None, :]
        target = returns if config.target == "return" else _zscore(returns, mask)
        low = self._low(target)[0].masked_fill(~mask, 0.0)
        class_mask = torch.ones_like(mask) if config.faithful_zero_labels else mask
        calendar_days = torch.cat([days, targets], dim=1)
        return Batch(
            CrossSectionInputs(
                factors=factors,
                returns=self._returns[days],
                observed=self._observed[days],
                calendar=self._calendar[calendar_days],
                anchor=anchors,
            ),
            CrossSectionTargets(
                returns=returns,
                target=target,
                low_target=low,
                up=returns > 0,
                mask=mask,
                class_mask=class_mask,
            ),
        )

    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        limit: int | None = None,
    ) -> Iterator[CrossSectionBatch]:
        anchors = torch.from_numpy(self.splits[split])
        for group in anchor_batches(
            anchors, batch_size, shuffle, seed, epoch, rank, world_size, limit
        ):
            yield self.batch(group)

    # ------------------------------------------------------------------ loss and scoring
    def goal(self, metric: str) -> Goal:
        return "min" if metric in ("mae", "loss") or "drawdown" in metric else "max"

    def loss(self, output: CrossSectionOutput, batch: CrossSectionBatch) -> Loss:
        """Sums of the masked absolute error on ``target`` and the cross-entropy on the
        direction (and the same for the low-frequency heads), weighted by `loss_weight`.

        Each term is a sum over its cells and the batch's loss divides their weighted sum by the
        regression cells once, so that micro-batches add up exactly; the official code instead
        averages each term over its own cells (the same cells unless ``faithful_zero_labels``).
        """
        config, targets = self.config, batch.targets
        steps = output.score.shape[1]
        regress = targets.mask[:, :steps]
        if config.faithful_zero_labels:
            regress = regress & (targets.returns[:, :steps] != 0)
        classify = targets.class_mask[:, :steps]
        up = targets.up[:, :steps].long()
        terms: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}

        def add(name: str, value: torch.Tensor, weight: float) -> None:
            terms[name], weights[name] = value, weight

        add("regression", _masked_abs(output.score, targets.target, regress), config.regression)
        if output.logits is not None:
            add("classification", _masked_ce(output.logits, up, classify), config.classification)
        if output.low_score is not None:
            low = _masked_abs(output.low_score, targets.low_target, regress)
            add("low_regression", low, config.low * config.regression)
        if output.low_logits is not None:
            low = _masked_ce(output.low_logits, up, classify)
            add("low_classification", low, config.low * config.classification)
        return Loss.weighted(terms, weights, self.loss_weight(batch, output))

    def loss_weight(self, batch: CrossSectionBatch, output: CrossSectionOutput) -> torch.Tensor:
        mask = batch.targets.mask[:, : output.score.shape[1]]
        if self.config.faithful_zero_labels:
            mask = mask & (batch.targets.returns[:, : output.score.shape[1]] != 0)
        return mask.sum().to(torch.float32)

    @property
    def signal_step(self) -> int:
        return self.config.horizon - 1

    def predict(
        self, output: CrossSectionOutput, batch: CrossSectionBatch, split: str | None = None
    ) -> CrossSectionPrediction:
        return make_prediction(output, batch, self.signal_step)

    def new_metrics(self) -> CrossSectionMetrics:
        c = self.config
        return CrossSectionMetrics(
            self.panel.num_days, len(self.panel.tickers), c.top_k, c.rebalance, c.n_drop, c.fee
        )

    def update_metrics(
        self,
        metrics: CrossSectionMetrics,
        prediction: CrossSectionPrediction,
        batch: CrossSectionBatch,
    ) -> None:
        metrics.update(prediction)

    def report(
        self,
        split: str,
        metrics: CrossSectionMetrics,
        predictions: list[CrossSectionPrediction],
        model_name: str,
    ) -> Report:
        from stgraph.tasks.cross_section.report import cross_section_report

        return cross_section_report(self, split, metrics, model_name)

    # ------------------------------------------------------------------ serving
    def export(self) -> dict[str, Any]:
        c = self.config
        embedding = self.context.embedding
        return {
            "tickers": list(self.panel.tickers),
            "window": c.window,
            "horizon": c.horizon,
            "factors": c.factors,
            "zscore": c.zscore,
            "calendar": c.calendar,
            "top_k": c.top_k,
            "embedding": None if embedding is None else embedding.tolist(),
            "dataset": self.dataset_name,
        }


def _zscore(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` ``[B, H, N]`` z-scored over the stocks of each (date, step), 0 where masked."""
    w = mask.to(values.dtype)
    n = w.sum(-1, keepdim=True).clamp_min(1)
    mean = (values * w).sum(-1, keepdim=True) / n
    std = (((values - mean) * w).square().sum(-1, keepdim=True) / n).sqrt()
    return ((values - mean) / std.clamp_min(1e-8)).masked_fill(~mask, 0.0)


def _masked_abs(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((prediction.float() - target) * mask).abs().sum()


def _masked_ce(logits: torch.Tensor, up: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits.float().flatten(0, -2), up.flatten(), reduction="none")
    return (ce * mask.flatten()).sum()
