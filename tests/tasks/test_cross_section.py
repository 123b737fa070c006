"""The cross-section task: splits, samples, targets, loss and leakage, on small panels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from stgraph.errors import InputError
from stgraph.tasks.cross_section.batch import CrossSectionOutput
from stgraph.tasks.cross_section.config import CrossSectionConfig
from stgraph.tasks.cross_section.panel import StockPanel, daily_returns, split_days
from stgraph.tasks.cross_section.task import CrossSectionTask
from tests.helpers import price_series

# 200 weekdays from 2020-01-01 (to 2020-10-07); Alpha360's look-back leaves training dates from
# day 64 (window 5 + 59 days).
DAYS = 200
SPLIT = {"method": "date", "val_start": "2020-06-01", "test_start": "2020-08-03"}


def make_task(series=None, **params) -> CrossSectionTask:
    series = series if series is not None else price_series(DAYS)
    config = CrossSectionConfig(**{"window": 5, "horizon": 2, "top_k": 2, "graph_k": 2, **params})
    panel = StockPanel.of(series)
    splits = split_days(series.timestamps, config.window, config.horizon, **SPLIT)
    return CrossSectionTask(panel, splits, config)


def test_daily_returns_need_both_days() -> None:
    close = np.array([[10.0, 20.0], [11.0, 0.0], [12.1, 22.0]])
    observed = np.array([[True, True], [True, False], [True, True]])
    r, ok = daily_returns(close, observed)
    assert ok.tolist() == [[False, False], [True, False], [True, False]]
    np.testing.assert_allclose(r[:, 0], [0.0, 0.1, 0.1], rtol=1e-6)
    assert r[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_split_days_keep_targets_inside_and_let_inputs_reach_back() -> None:
    stamps = pd.bdate_range("2020-01-01", periods=30)  # 2020-01-01 .. 2020-02-11
    splits = split_days(stamps, 3, 2, "date", val_start="2020-01-20", test_start="2020-01-31")
    val_first, test_first = 13, 22  # 2020-01-20 and 2020-01-31 are days 13 and 22
    assert splits.train.tolist() == list(range(3, val_first - 2))
    assert splits.val.tolist() == list(range(val_first, test_first - 2))
    assert splits.test.tolist() == list(range(test_first, 28))
    inside = split_days(
        stamps, 3, 2, "date", val_start="2020-01-20", test_start="2020-01-31", inside=True
    )
    assert inside.val.tolist() == list(range(val_first + 3, test_first - 2))


def test_split_days_name_an_empty_period() -> None:
    stamps = pd.bdate_range("2020-01-01", periods=30)
    with pytest.raises(InputError, match="test period .* no prediction date"):
        split_days(stamps, 3, 2, "date", val_start="2020-01-20", test_start="2020-02-10")
    with pytest.raises(InputError, match="test period \\(no trading day\\)"):
        split_days(stamps, 3, 2, "date", val_start="2020-01-20", test_start="2021-01-01")


def test_batch_holds_the_window_and_the_next_returns() -> None:
    task = make_task()
    anchors = torch.tensor(task.splits.test[:3])
    batch = task.batch(anchors)
    inputs, targets = batch.inputs, batch.targets
    assert inputs.factors.shape == (3, 5, 6, 360)
    assert inputs.calendar.shape == (3, 7, 2)
    t = int(anchors[0])
    r = task.panel.returns
    torch.testing.assert_close(inputs.returns[0], torch.from_numpy(r[t - 4 : t + 1]))
    torch.testing.assert_close(targets.returns[0], torch.from_numpy(r[t + 1 : t + 3]))
    # day of week and month of the real dates, targets' days included
    stamps = task.panel.series.timestamps[t - 4 : t + 3]
    assert inputs.calendar[0, :, 0].tolist() == list(stamps.dayofweek)
    assert inputs.calendar[0, :, 1].tolist() == list(stamps.month - 1)
    # the regression target: each (date, step) z-scored over its stocks
    day = targets.returns[0, 1].double()
    expected = (day - day.mean()) / day.std(unbiased=False)
    torch.testing.assert_close(targets.target[0, 1].double(), expected, rtol=1e-5, atol=1e-5)
    assert targets.up.equal(targets.returns > 0)
    # factors z-scored per day: each observed factor column has mean 0 over the stocks
    assert inputs.factors[0, -1].mean(0).abs().max() < 1e-4


def test_suspended_stock_is_masked_and_never_filled() -> None:
    series = price_series(DAYS)
    t = 70
    series.mask[t + 1, 3] = False  # stock 3 does not trade the day after t
    series.values[t + 1, 3] = 0.0
    task = make_task(series)
    batch = task.batch(torch.tensor([t]))
    assert batch.targets.mask[0, :, 3].tolist() == [False, False]  # r[t+1], r[t+2] both need it
    assert batch.targets.target[0, :, 3].tolist() == [0.0, 0.0]
    faithful = make_task(series, faithful_zero_labels=True).batch(torch.tensor([t]))
    assert faithful.targets.class_mask[0, :, 3].tolist() == [True, True]  # counted as "down"


def test_loss_sums_masked_terms_by_hand() -> None:
    task = make_task(target="return")
    batch = task.batch(torch.tensor(task.splits.train[:2]))
    b, h, n = batch.targets.returns.shape
    score = torch.full((b, h, n), 0.01)
    logits = torch.zeros(b, h, n, 2)
    logits[..., 1] = 1.0
    loss = task.loss(CrossSectionOutput(score=score, logits=logits), batch)
    mask = batch.targets.mask
    mae = ((0.01 - batch.targets.returns).abs() * mask).sum()
    up = batch.targets.up
    ce_up, ce_down = -F.log_softmax(torch.tensor([0.0, 1.0]), 0)[[1, 0]]
    ce = (torch.where(up, ce_up, ce_down) * mask).sum()
    torch.testing.assert_close(loss.terms["regression"], mae)
    torch.testing.assert_close(loss.terms["classification"], ce)
    torch.testing.assert_close(loss.total, mae + ce)
    assert float(loss.weight) == float(mask.sum())


def test_low_heads_add_their_terms_with_their_weight() -> None:
    task = make_task(low=0.5)
    batch = task.batch(torch.tensor(task.splits.train[:2]))
    shape = batch.targets.returns.shape
    output = CrossSectionOutput(
        score=torch.zeros(shape), low_score=torch.ones(shape), low_logits=torch.zeros(*shape, 2)
    )
    loss = task.loss(output, batch)
    low = ((1 - batch.targets.low_target).abs() * batch.targets.mask).sum()
    torch.testing.assert_close(loss.terms["low_regression"], low)
    ce = batch.targets.mask.sum() * np.log(2)
    torch.testing.assert_close(loss.terms["low_classification"], ce.float())
    expected = loss.terms["regression"] + 0.5 * low + 0.5 * ce
    torch.testing.assert_close(loss.total, expected.float())


def test_universe_keeps_stocks_by_training_coverage() -> None:
    series = price_series()
    series.mask[:40, 1] = False  # listed late: trades on 1/3 of the first 60 days
    panel = StockPanel.of(series)
    assert panel.universe(60, 0.5).tolist() == [0, 2, 3, 4, 5]
    assert panel.universe(60, 0.3).tolist() == [0, 1, 2, 3, 4, 5]
    assert panel.select(np.array([0, 2])).tickers == ("S0", "S2")


def test_universe_smaller_than_k_is_an_error() -> None:
    with pytest.raises(
        InputError, match="6 stocks, fewer than the backtest's task.params.top_k = 7"
    ):
        make_task(top_k=7)


def test_prices_after_training_change_nothing_fitted() -> None:
    """Changing every price after the last training target leaves the graphs, the embedding,
    the universe and the training samples (inputs and targets) unchanged; the faithful
    whole-period graph does change."""
    base = make_task()
    changed_series = price_series(DAYS)
    last = int(base.splits.train[-1]) + base.config.horizon  # the last training target day
    rng = np.random.default_rng(7)
    changed_series.values[last + 1 :, :, :4] *= rng.uniform(0.5, 1.5, (1, 6, 1))
    changed = make_task(changed_series)
    for name, graph in base.context.graphs.items():
        assert graph.edge_index.equal(changed.context.graphs[name].edge_index)
        assert graph.edge_weight.equal(changed.context.graphs[name].edge_weight)
    assert base.context.embedding.equal(changed.context.embedding)
    anchors = torch.tensor(base.splits.train)
    a, b = base.batch(anchors), changed.batch(anchors)
    for field in dataclasses.fields(a.inputs):
        assert getattr(a.inputs, field.name).equal(getattr(b.inputs, field.name)), field.name
    for field in dataclasses.fields(a.targets):
        assert getattr(a.targets, field.name).equal(getattr(b.targets, field.name)), field.name
    leaky = make_task(faithful_whole_period_graph=True)
    leaky_changed = make_task(changed_series, faithful_whole_period_graph=True)
    assert not leaky.context.embedding.equal(leaky_changed.context.embedding)


def test_batches_cover_each_split_once_and_shuffle_by_seed() -> None:
    task = make_task()
    seen = torch.cat([b.inputs.anchor for b in task.batches("train", 8, shuffle=True, seed=1)])
    assert sorted(seen.tolist()) == task.splits.train.tolist()
    again = torch.cat([b.inputs.anchor for b in task.batches("train", 8, shuffle=True, seed=1)])
    assert seen.equal(again)
    ranks = [
        torch.cat([b.inputs.anchor for b in task.batches("val", 4, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) and not set(ranks[0].tolist()) & set(ranks[1].tolist())


def test_bad_settings_are_named() -> None:
    with pytest.raises(InputError, match="factors must be one of"):
        CrossSectionConfig(factors="alpha999")
    with pytest.raises(InputError, match="monitor must be one of"):
        CrossSectionConfig(monitor="mae")
    series = price_series()
    series = dataclasses.replace(series, channels=("close", "open", "high", "low", "turnover"))
    with pytest.raises(InputError, match="missing volume"):
        StockPanel.of(series)


def _prediction(task, anchors, seed):
    batch = task.batch(torch.tensor(anchors))
    shape = batch.targets.returns.shape
    generator = torch.Generator().manual_seed(seed)
    output = CrossSectionOutput(score=torch.randn(shape, generator=generator))
    return task.predict(output, batch)


def test_metrics_of_shards_add_up_to_the_whole_split() -> None:
    from stgraph.metrics.finance import DailyICMetrics

    task = make_task()
    days = task.splits.test
    whole, first, second = task.new_metrics(), task.new_metrics(), task.new_metrics()
    a, b = _prediction(task, days[:5], 0), _prediction(task, days[5:], 1)
    for metrics, parts in ((whole, (a, b)), (first, (a,)), (second, (b,))):
        for part in parts:
            metrics.update(part)
    first.load_state(first.state() + second.state())
    assert first.compute() == pytest.approx(whole.compute(), nan_ok=True)
    ic = DailyICMetrics()
    for part in (a, b):
        ic.update(part.score, part.returns, part.mask)
    assert whole.compute()["rank_ic"] == pytest.approx(ic.compute()["rank_ic"])
    assert whole.compute()["days"] == len(days)


def test_direction_comes_from_the_logits_or_the_sign() -> None:
    task = make_task()
    batch = task.batch(torch.tensor(task.splits.test[:2]))
    shape = batch.targets.returns.shape
    score = torch.randn(shape)
    logits = torch.stack([score, -score], dim=-1)  # the head says the opposite of the score
    with_head = task.predict(CrossSectionOutput(score=score, logits=logits), batch)
    without = task.predict(CrossSectionOutput(score=score), batch)
    assert with_head.up.equal(score[:, 1] < 0)
    assert without.up.equal(score[:, 1] > 0)


@pytest.mark.slow
def test_rolling_folds_are_nested_runs_with_mean_and_std(tmp_path) -> None:
    import mlflow

    from stgraph.pipeline import fit, resolve_config
    from tests.helpers import long_table

    path = tmp_path / "prices.parquet"
    long_table(price_series(days=260)).to_parquet(path)
    folds = [
        {"val_start": "2020-06-01", "test_start": "2020-07-01", "test_end": "2020-07-31"},
        {"train_start": "2020-05-01", "val_start": "2020-07-01", "test_start": "2020-08-03"},
    ]
    config = resolve_config(
        str(path),
        model="momentum",
        task="cross-section",
        assignments=[
            "task.params.top_k=2",
            "task.params.window=5",
            "task.params.embedding=none",
            "model.params.lookback=5",
        ],
        flags={"data.folds": folds, "train.epochs": 1, "train.batch_size": 8},
    )
    summary = fit(config, quiet=True)
    assert len(summary["folds"]) == 2
    ranks = [fold["test"]["rank_ic"] for fold in summary["folds"]]
    assert summary["test"]["rank_ic"] == pytest.approx(np.mean(ranks))
    assert summary["test_std"]["rank_ic"] == pytest.approx(np.std(ranks, ddof=1))
    client = mlflow.MlflowClient()
    parent = client.get_run(summary["run_id"])
    assert parent.data.metrics["test_mean_rank_ic"] == pytest.approx(np.mean(ranks))
    for fold in summary["folds"]:
        child = client.get_run(fold["run_id"])
        assert child.data.tags["mlflow.parentRunId"] == summary["run_id"]
    test_days = [fold["test"]["days"] for fold in summary["folds"]]
    assert test_days == [21, 105]  # July: 23 weekdays less 2 target days; from August: 107 less 2


def test_split_dates_under_a_ratio_split_are_an_error() -> None:
    stamps = pd.bdate_range("2020-01-01", periods=30)
    with pytest.raises(InputError, match="split.test_start apply to split method 'date'"):
        split_days(stamps, 3, 2, "ratio", test_start="2020-01-20")


def test_train_start_drops_earlier_training_dates_only() -> None:
    stamps = pd.bdate_range("2020-01-01", periods=40)
    splits = split_days(
        stamps,
        3,
        2,
        "date",
        val_start="2020-01-20",
        test_start="2020-01-31",
        train_start="2020-01-08",
    )
    assert splits.train[0] == 5  # 2020-01-08 is day 5; its inputs reach back to day 2
