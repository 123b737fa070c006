import math

import torch

from stgraph.metrics import ForecastMetrics, mlflow_key


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
