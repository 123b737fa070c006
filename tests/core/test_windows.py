import numpy as np
import pandas as pd
import pytest

from stgraph.data.windows import anchors, calendar_features, split_samples
from stgraph.errors import InputError


def test_anchors_follow_dcrnn_convention():
    # T = 30, 12 -> 12: anchors t = 11 .. T-13 = 17, so S = T - 23 = 7
    got = anchors(30, 12, 12)
    assert got.tolist() == list(range(11, 18))


def test_ratio_split_rounds_train_and_test_and_gives_val_the_rest():
    stamps = pd.date_range("2024-01-01", periods=2016, freq="5min")
    splits = split_samples(stamps, 12, 12)
    # S = 2016 - 23 = 1993; round(0.7 S) = 1395 train; round(0.2 S) = 399 test; 199 val
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1395, 199, 399)
    assert splits.train[0] == 11 and splits.test[-1] == 2016 - 13
    assert splits.train[-1] + 1 == splits.val[0] and splits.val[-1] + 1 == splits.test[0]
    assert splits.train_steps == splits.train[-1] + 1


def test_date_split_drops_windows_straddling_a_boundary():
    stamps = pd.date_range("2024-01-01", periods=100, freq="h")
    splits = split_samples(
        stamps, 3, 2, method="date", val_start="2024-01-03", test_start="2024-01-04"
    )
    val_first = stamps.get_loc(pd.Timestamp("2024-01-03"))
    test_first = stamps.get_loc(pd.Timestamp("2024-01-04"))
    assert splits.train[-1] + 2 < val_first  # last target of train is before validation
    assert splits.val[0] - 2 == val_first  # first val window starts exactly at the boundary
    assert splits.test[0] - 2 == test_first


def test_within_day_windows_never_cross_midnight():
    stamps = pd.date_range("2024-01-01", periods=288 * 3, freq="5min")
    splits = split_samples(stamps, 12, 12, within_day=True)
    all_anchors = np.concatenate([splits.train, splits.val, splits.test])
    first_day = stamps[all_anchors - 11].normalize()
    last_day = stamps[all_anchors + 12].normalize()
    assert (first_day == last_day).all()
    assert len(all_anchors) == 3 * (288 - 24 + 1)


def test_bad_ratios_and_empty_split_are_input_errors():
    stamps = pd.date_range("2024-01-01", periods=200, freq="5min")
    with pytest.raises(InputError, match="summing to 1"):
        split_samples(stamps, 12, 12, ratios=[0.5, 0.1, 0.1])
    with pytest.raises(InputError, match="val split has no windows"):
        split_samples(stamps[:26], 12, 12)  # S = 3: 2 train, 0 val, 1 test


def test_calendar_features_from_real_timestamps():
    stamps = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 06:00", "2024-01-06 18:00"])
    tod, dow = calendar_features(stamps)
    np.testing.assert_allclose(tod, [0.0, 0.25, 0.75])
    assert dow.tolist() == [0, 0, 5]  # 2024-01-01 is a Monday, 01-06 a Saturday
