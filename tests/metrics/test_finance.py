import math
import statistics

import numpy as np
import pytest
import torch
from scipy import stats

from stgraph.metrics import DailyICMetrics, DirectionMetrics, SplitMetrics

NAN = math.nan


def _days(prediction, target, mask):
    return (
        torch.tensor(prediction, dtype=torch.float64),
        torch.tensor(target, dtype=torch.float64),
        torch.tensor(mask),
    )


# Five stocks, one row per date. Worked out by hand:
# day 1: pred 1,2,3,4 / returns 1,3,2,4 (stock 5 masked). Deviations from the means (2.5, 2.5):
#        dx = -1.5,-.5,.5,1.5, dy = -1.5,.5,-.5,1.5; cov = 2.25-.25-.25+2.25 = 4; var 5 and 5
#        IC = 4/5 = 0.8. Both are permutations of 1..4, so the ranks are the values: RankIC 0.8.
# day 2: pred 1,2,3,10 / returns 1,2,3,4; stock 5 (100 vs -50) masked. Means 4 and 2.5:
#        dx = -3,-2,-1,6, dy = -1.5,-.5,.5,1.5; cov = 4.5+1-.5+9 = 14; var 50 and 5
#        IC = 14/sqrt(250) = 0.8854; monotone, so RankIC = 1.
# day 3: pred 1,1,2,10 (a tie) / returns 1,2,3,4; stock 5 masked. Means 3.5 and 2.5:
#        dx = -2.5,-2.5,-1.5,6.5; cov = 3.75+1.25-.75+9.75 = 14; var 57 and 5
#        IC = 14/sqrt(285) = 0.8293. Ranks of pred: 1.5,1.5,3,4 (the tie shares (1+2)/2), mean 2.5:
#        dx = -1,-1,.5,1.5; cov = 1.5+.5+.25+2.25 = 4.5; var 4.5 and 5: RankIC = 4.5/sqrt(22.5) =
#        3/sqrt(10) = 0.9487.
# day 4: every stock masked -> nothing.  day 5: one observed stock -> nothing.
# day 6: constant predictions 2,2,2,2 -> correlation undefined -> nothing.
PREDICTION = [
    [1, 2, 3, 4, 0],
    [1, 2, 3, 10, 100],
    [1, 1, 2, 10, 7],
    [1, 2, 3, 4, 5],
    [1, 2, 3, 4, 5],
    [2, 2, 2, 2, 9],
]
TARGET = [
    [1, 3, 2, 4, 0],
    [1, 2, 3, 4, -50],
    [1, 2, 3, 4, 9],
    [5, 4, 3, 2, 1],
    [5, 4, 3, 2, 1],
    [1, 2, 3, 4, 5],
]
MASK = [
    [True, True, True, True, False],
    [True, True, True, True, False],
    [True, True, True, True, False],
    [False] * 5,
    [True, False, False, False, False],
    [True, True, True, True, False],
]
IC = [0.8, 14 / math.sqrt(250), 14 / math.sqrt(285)]
RANK_IC = [0.8, 1.0, 3 / math.sqrt(10)]


def test_hand_computed_ic_rank_ic_and_icir_with_masks_ties_and_undefined_days():
    m = DailyICMetrics()
    m.update(*_days(PREDICTION, TARGET, MASK))
    r = m.compute()
    assert r["ic_days"] == 3  # days 4, 5 and 6 contribute nothing
    for name, daily in (("ic", IC), ("rank_ic", RANK_IC)):
        mean, std = statistics.mean(daily), statistics.stdev(daily)  # stdev: ddof = 1
        assert r[name] == pytest.approx(mean, rel=1e-12)
        assert r[f"{name}_std"] == pytest.approx(std, rel=1e-9)
        assert r[f"{name}ir"] == pytest.approx(mean / std, rel=1e-9)
    # ic = (0.8 + 0.8854 + 0.8293) / 3 = 0.8382; rank_ic = (0.8 + 1 + 0.9487) / 3 = 0.9162
    assert r["ic"] == pytest.approx(0.8382, abs=1e-4)
    assert r["rank_ic"] == pytest.approx(0.9162, abs=1e-4)
    assert set(r) == {"ic", "ic_std", "icir", "rank_ic", "rank_ic_std", "rank_icir", "ic_days"}


def test_one_row_at_a_time_and_a_one_dimensional_day_match_one_pass():
    whole = DailyICMetrics()
    whole.update(*_days(PREDICTION, TARGET, MASK))
    rows = DailyICMetrics()
    for p, t, k in zip(*_days(PREDICTION, TARGET, MASK)):
        rows.update(p, t, k)  # [N]: one day
    assert rows.compute() == pytest.approx(whole.compute(), rel=1e-12)


def test_all_masked_and_single_day_give_nan_not_zero():
    m = DailyICMetrics()
    m.update(*_days(PREDICTION[3:6], TARGET[3:6], MASK[3:6]))  # only undefined days
    r = m.compute()
    assert r["ic_days"] == 0 and all(math.isnan(r[k]) for k in r if k != "ic_days")
    m.update(*_days(PREDICTION[:1], TARGET[:1], MASK[:1]))  # day 1 alone: IC 0.8, std undefined
    r = m.compute()
    assert r["ic"] == pytest.approx(0.8) and r["rank_ic"] == pytest.approx(0.8)
    assert math.isnan(r["ic_std"]) and math.isnan(r["icir"]) and r["ic_days"] == 1


def test_non_finite_values_count_as_unobserved():
    # day 1 with NaN in the masked column and in place of the mask: the same IC
    prediction = [[1, 2, 3, 4, NAN]]
    target = [[1, 3, 2, 4, math.inf]]
    m = DailyICMetrics()
    m.update(torch.tensor(prediction), torch.tensor(target))
    assert m.compute()["ic"] == pytest.approx(0.8)


def test_state_all_reduce_equals_one_pass():
    whole = DailyICMetrics()
    whole.update(*_days(PREDICTION, TARGET, MASK))
    a, b = DailyICMetrics(), DailyICMetrics()
    a.update(*_days(PREDICTION[:2], TARGET[:2], MASK[:2]))
    b.update(*_days(PREDICTION[2:], TARGET[2:], MASK[2:]))
    union = DailyICMetrics()
    union.load_state(a.state() + b.state())
    assert union.compute() == pytest.approx(whole.compute(), rel=1e-12)
    assert isinstance(union, SplitMetrics)


def test_matches_scipy_on_random_days_with_ties_and_masks():
    rng = np.random.default_rng(0)
    days, stocks = 30, 25
    prediction = rng.integers(0, 6, (days, stocks)).astype(float)  # ties on purpose
    target = prediction * 0.3 + rng.normal(size=(days, stocks))
    target[:, :5] = np.round(target[:, :5])  # ties in the returns too
    mask = rng.random((days, stocks)) < 0.8
    m = DailyICMetrics(min_stocks=3)
    m.update(torch.from_numpy(prediction), torch.from_numpy(target), torch.from_numpy(mask))
    ic, rank_ic = [], []
    for p, t, k in zip(prediction, target, mask):
        p, t = p[k], t[k]
        if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(t) > 0:
            ic.append(stats.pearsonr(p, t).statistic)
            rank_ic.append(stats.spearmanr(p, t).statistic)
    r = m.compute()
    assert r["ic_days"] == len(ic) == days
    for name, daily in (("ic", ic), ("rank_ic", rank_ic)):
        assert r[name] == pytest.approx(np.mean(daily), rel=1e-10)
        assert r[f"{name}_std"] == pytest.approx(np.std(daily, ddof=1), rel=1e-8)
        assert r[f"{name}ir"] == pytest.approx(np.mean(daily) / np.std(daily, ddof=1), rel=1e-8)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="min_stocks"):
        DailyICMetrics(min_stocks=1)
    with pytest.raises(ValueError, match="one shape"):
        DailyICMetrics().update(torch.zeros(2, 3), torch.zeros(2, 4))


# Directional calls: 3 dates x 4 stocks, the last cell of date 2 masked (11 scored cells).
CALLED = [[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]]
WENT_UP = [[1, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
SCORED = [[True] * 4, [True, True, True, False], [True] * 4]
# Correct: 3 + 2 + 2 = 7 of 11. Up: 2 + 2 + 2 = 6, down 5 (majority: up, 6/11).
# Called up and up: 2 + 1 + 1 = 4 (recall on up 4/6); called down and down: 7 - 4 = 3 (recall
# on down 3/5); balanced = (4/6 + 3/5) / 2 = 0.6333. Called up: 3 + 1 + 2 = 6 of 11.
DIRECTION = {
    "accuracy": 7 / 11,
    "majority_rate": 6 / 11,
    "balanced_accuracy": (4 / 6 + 3 / 5) / 2,
    "up_rate": 6 / 11,
    "label_up_rate": 6 / 11,
    "direction_cells": 11.0,
}


def _calls(called, went_up, scored):
    return torch.tensor(called, dtype=torch.bool), torch.tensor(went_up), torch.tensor(scored)


def test_direction_metrics_by_hand_and_against_scikit_learn():
    m = DirectionMetrics()
    m.update(*_calls(CALLED, WENT_UP, SCORED))
    assert m.compute() == pytest.approx(DIRECTION, rel=1e-12)
    metrics = pytest.importorskip("sklearn.metrics")
    keep = np.array(SCORED)
    truth, call = np.array(WENT_UP)[keep], np.array(CALLED)[keep]
    assert m.compute()["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(truth, call), rel=1e-12
    )
    assert m.compute()["accuracy"] == pytest.approx(metrics.accuracy_score(truth, call))


def test_direction_state_of_two_shards_sums_to_the_whole():
    a, b = DirectionMetrics(), DirectionMetrics()
    a.update(*_calls(CALLED[:1], WENT_UP[:1], SCORED[:1]))
    b.update(*_calls(CALLED[1:], WENT_UP[1:], SCORED[1:]))
    union = DirectionMetrics()
    union.load_state(a.state() + b.state())
    assert union.compute() == pytest.approx(DIRECTION, rel=1e-12)
    assert isinstance(union, SplitMetrics)


def test_direction_constant_calls_score_half_balanced_and_nan_labels_are_unscored():
    # Always "up" on 4 cells, 1 of them up: accuracy 1/4 = the up share, balanced 0.5.
    m = DirectionMetrics()
    m.update(torch.ones(2, 2, 1), torch.tensor([[[1.0], [0.0]], [[0.0], [0.0]]]))
    r = m.compute()
    assert r["accuracy"] == 0.25 and r["balanced_accuracy"] == 0.5 and r["up_rate"] == 1.0
    assert r["majority_rate"] == 0.75
    # A NaN label is unknown: the cell is not scored.
    m = DirectionMetrics()
    m.update(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, NAN, 0.0]))
    assert m.compute()["direction_cells"] == 2 and m.compute()["accuracy"] == 0.5
    # One realised direction only: the mean recall over the directions that occur.
    m = DirectionMetrics()
    m.update(torch.tensor([True, False]), torch.tensor([True, True]))
    assert m.compute()["balanced_accuracy"] == 0.5


def test_direction_empty_is_nan_and_bad_input_is_rejected():
    m = DirectionMetrics()
    m.update(*_calls(CALLED, WENT_UP, [[False] * 4] * 3))
    r = m.compute()
    assert r["direction_cells"] == 0
    assert all(math.isnan(v) for key, v in r.items() if key != "direction_cells")
    with pytest.raises(ValueError, match="one shape"):
        m.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="predicted_up must be bool or 0/1"):
        m.update(torch.tensor([0.3, 0.9]), torch.tensor([0.0, 1.0]))
