import math

import pytest
import torch

from stgraph.metrics import ForecastMetrics, SplitMetrics, mlflow_key


def _batch(pred, target, mask):
    shape = (1, len(pred), 1, 1)
    return (
        torch.tensor(pred, dtype=torch.float32).view(shape),
        torch.tensor(target, dtype=torch.float32).view(shape),
        torch.tensor(mask).view(shape),
    )


def test_hand_computed_values_at_steps_and_pooled():
    m = ForecastMetrics(horizon=3, steps=(1, 3))
    m.update(*_batch([1.0, 2.0, 5.0], [2.0, 2.0, 1.0], [True, True, True]))
    r = m.compute()
    assert r["mae@1"] == 1.0 and r["mae@3"] == 4.0
    assert math.isclose(r["mae_avg3"], 5 / 3)
    assert math.isclose(r["rmse_avg3"], math.sqrt((1 + 0 + 16) / 3))
    assert math.isclose(r["mape@1"], 50.0) and math.isclose(r["mape@3"], 400.0)


def test_whole_split_accumulation_differs_from_mean_of_batch_means():
    m = ForecastMetrics(horizon=1, steps=(1,))
    # batch A: one observed target, error 10; batch B: three observed, error 0
    m.update(*_batch([10.0], [20.0], [True]))
    pred = torch.tensor([1.0, 1.0, 1.0]).view(3, 1, 1, 1)
    m.update(pred, pred.clone(), torch.ones(3, 1, 1, 1, dtype=torch.bool))
    assert m.compute()["mae@1"] == 10 / 4  # pooled; a mean of batch means would say 5.0


def test_all_masked_batch_contributes_nothing():
    m = ForecastMetrics(horizon=2, steps=(2,))
    m.update(*_batch([5.0, 5.0], [0.0, 0.0], [False, False]))
    assert math.isnan(m.compute()["mae@2"])  # not a perfect 0
    m.update(*_batch([1.0, 3.0], [1.0, 1.0], [True, True]))
    assert m.compute()["mae@2"] == 2.0


def test_masked_entries_are_ignored_and_zero_targets_skip_mape():
    m = ForecastMetrics(horizon=2, steps=(1, 2))
    m.update(*_batch([100.0, 3.0], [0.0, 0.0], [False, True]))
    r = m.compute()
    assert math.isnan(r["mae@1"]) and r["mae@2"] == 3.0
    assert math.isnan(r["mape@2"])  # target 0: MAPE undefined


def test_state_round_trip_supports_all_reduce():
    a, b = ForecastMetrics(2), ForecastMetrics(2)
    a.update(*_batch([1.0, 2.0], [0.5, 1.0], [True, True]))
    b.load_state(a.state() * 2)
    assert b.compute()["mae_avg2"] == a.compute()["mae_avg2"]


def test_mlflow_key():
    assert mlflow_key("mae@12") == "mae_at12"


def test_near_zero_targets_do_not_blow_up_mape_and_are_counted():
    # issue #19: a speed set with exact zeros and values down to 1e-17 gave mape@12 ~ 1.25e11 %.
    # targets 50, 1e-17, 0, 40 (all observed), predictions 45, 1, 1, 44:
    #   MAE  = (5 + 1 + 1 + 4) / 4 = 2.75 (every observed target)
    #   MAPE = 100 * (5/50 + 4/40) / 2 = 100 * (0.1 + 0.1) / 2 = 10 % (1e-17 and 0 skipped)
    pred = torch.tensor([45.0, 1.0, 1.0, 44.0]).view(4, 1, 1, 1)
    target = torch.tensor([50.0, 1e-17, 0.0, 40.0]).view(4, 1, 1, 1)
    mask = torch.ones(4, 1, 1, 1, dtype=torch.bool)
    m = ForecastMetrics(horizon=1, steps=(1,))
    m.update(pred, target, mask)
    r = m.compute()
    assert math.isclose(r["mae@1"], 2.75)
    assert math.isclose(r["mape@1"], 10.0) and math.isclose(r["mape_avg1"], 10.0)
    assert r["mape_skipped_targets"] == 2
    # Skipping exact zeros only (the old rule) reproduces the pathology: 1/1e-17 = 1e17 enters
    #   MAPE = 100 * (0.1 + 1e17 + 0.1) / 3 = 3.33e18 %, one target skipped.
    old = ForecastMetrics(horizon=1, steps=(1,), mape_threshold=0.0)
    old.update(pred, target, mask)
    r_old = old.compute()
    assert r_old["mae@1"] == r["mae@1"]  # MAE does not depend on the threshold
    tiny = float(torch.tensor(1e-17))  # the float32 value the metric sees, in float64
    assert math.isclose(r_old["mape@1"], 100 * (0.1 + 1 / tiny + 0.1) / 3)
    assert r_old["mape@1"] > 1e18 and r_old["mape_skipped_targets"] == 1


def test_mape_threshold_boundary_masks_and_skip_count_over_all_steps():
    # threshold 0.5 (exact in float32). Step 1 targets 0.5, 0.25, 0.0 (masked), 2.0;
    # step 2 targets 0.0, 0.1, 4.0 (masked), 4.0; predictions all 1.0.
    #   step 1: 0.5 kept (|0.5| >= 0.5): |1-0.5|/0.5 = 1.0; 0.25 skipped; 0.0 masked (neither kept
    #           nor skipped); 2.0 kept: |1-2|/2 = 0.5  -> mape@1 = 100 * 1.5 / 2 = 75 %
    #   step 2: 0.0 and 0.1 skipped; 4.0 masked; 4.0 kept: 3/4 = 0.75  -> mape@2 = 75 %
    #   pooled: 100 * (1.0 + 0.5 + 0.75) / 3 = 75 %; skipped: 1 (step 1) + 2 (step 2) = 3
    target = torch.tensor([[0.5, 0.0], [0.25, 0.1], [0.0, 4.0], [2.0, 4.0]]).view(4, 2, 1, 1)
    mask = torch.tensor([[True, True], [True, True], [False, False], [True, True]]).view(4, 2, 1, 1)
    m = ForecastMetrics(horizon=2, steps=(1, 2), mape_threshold=0.5)
    m.update(torch.ones_like(target), target, mask)
    r = m.compute()
    assert math.isclose(r["mape@1"], 75.0) and math.isclose(r["mape@2"], 75.0)
    assert math.isclose(r["mape_avg2"], 75.0)
    assert r["mape_skipped_targets"] == 3
    # the count is a split-level total, not a per-step column: a `mae@3`-style table built from
    # the names that start with "mae" (as the CLI's summary does) does not pick it up
    assert [k for k in r if k.startswith("mae")] == ["mae@1", "mae@2", "mae_avg2"]
    assert [k for k in r if "skipped" in k] == ["mape_skipped_targets"]


def test_all_masked_batch_skips_nothing_and_default_threshold():
    m = ForecastMetrics(horizon=1, steps=(1,))
    assert m.mape_threshold == 1e-4
    m.update(*_batch([1.0], [0.0], [False]))
    r = m.compute()
    assert math.isnan(r["mape@1"]) and r["mape_skipped_targets"] == 0


def test_state_all_reduce_sums_shards_including_skipped_counts():
    # shard a: targets 0 and 2 (pred 1, 1): 0 skipped, ape 1/2; shard b: target 4 (pred 2): ape 2/4
    # union: mae = (1 + 1 + 2) / 3 = 4/3, mape = 100 * (0.5 + 0.5) / 2 = 50 %, skipped 1
    a, b = ForecastMetrics(1, (1,)), ForecastMetrics(1, (1,))
    a.update(*_batch([1.0], [0.0], [True]))
    a.update(*_batch([1.0], [2.0], [True]))
    b.update(*_batch([2.0], [4.0], [True]))
    union = ForecastMetrics(1, (1,))
    union.load_state(a.state() + b.state())
    r = union.compute()
    assert math.isclose(r["mae@1"], 4 / 3) and math.isclose(r["mape@1"], 50.0)
    assert r["mape_skipped_targets"] == 1


def test_negative_mape_threshold_is_rejected():
    with pytest.raises(ValueError, match="mape_threshold"):
        ForecastMetrics(3, mape_threshold=-1.0)


def test_forecast_metrics_follow_the_split_metrics_interface():
    assert isinstance(ForecastMetrics(3), SplitMetrics)
