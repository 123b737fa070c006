"""The embedded simulator: determinism, realism checks, and proof that its road graph matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from stgraph.data.adapters import ADAPTERS
from stgraph.data.cards import read_card
from stgraph.data.simulator import simulate_traffic
from stgraph.errors import InputError

CARD = Path(__file__).resolve().parents[2] / "datasets" / "simulator.yaml"
HORIZON = 12  # 60 minutes ahead
LAGS = 12


@pytest.fixture(scope="module")
def default():
    return simulate_traffic()


def _profile(values: np.ndarray, mask: np.ndarray, timestamps: pd.DatetimeIndex, stop: int):
    """``[T, N]`` per-node mean of observed values by (weekend, time slot), fit on ``[:stop]``."""
    steps_per_day = int(pd.Timedelta(days=1) / (timestamps[1] - timestamps[0]))
    weekend = np.asarray(timestamps.day_of_week >= 5, dtype=int)
    key = weekend * steps_per_day + np.arange(len(timestamps)) % steps_per_day
    total = np.zeros((2 * steps_per_day, values.shape[1]))
    count = np.zeros_like(total)
    np.add.at(total, key[:stop], np.where(mask[:stop], values[:stop], 0.0))
    np.add.at(count, key[:stop], mask[:stop])
    return (total / np.maximum(count, 1))[key]


def _linear_mae(dataset, graphs: list[np.ndarray]) -> float:
    """Masked test MAE of per-node least squares forecasting speed HORIZON steps ahead.

    Features: the node's last LAGS anomalies (speed minus its weekly profile) and, per graph in
    ``graphs``, the last LAGS of the weight-averaged anomalies of the node's neighbours in it.
    Fitted on targets in the first 70 % of steps, scored on origins in the last 20 %.
    """
    series = dataset.series
    values = series.values[..., 0].astype(np.float64)
    mask = series.mask[..., 0]
    t = values.shape[0]
    train_stop, test_start = int(0.7 * t), int(0.8 * t)
    anomaly = np.where(mask, values - _profile(values, mask, series.timestamps, train_stop), 0.0)
    sources = [anomaly]
    for weights in graphs:
        weights = weights.astype(np.float64).copy()
        np.fill_diagonal(weights, 0.0)
        observed_weight = mask @ weights.T  # only observed neighbours count in the average
        sources.append((anomaly @ weights.T) / np.maximum(observed_weight, 1e-9))
    origins = t - HORIZON - LAGS + 1  # forecast origins LAGS - 1 ... t - HORIZON - 1
    target, target_mask = anomaly[LAGS - 1 + HORIZON :], mask[LAGS - 1 + HORIZON :]
    origin = np.arange(LAGS - 1, t - HORIZON)
    fit_rows, test_rows = origin + HORIZON < train_stop, origin >= test_start
    errors = []
    for node in range(values.shape[1]):
        # Row i holds the LAGS values ending at origin i of each source (views, no copies).
        windows = [sliding_window_view(x[:, node], LAGS)[:origins] for x in sources]
        design = np.hstack([*windows, np.ones((origins, 1))])
        fit = fit_rows & target_mask[:, node]
        # Normal equations through einsum, which stays single-threaded: multithreaded BLAS (lstsq,
        # @) slows down fifty-fold when the test shares a busy machine.
        rows = design[fit]
        gram = np.einsum("ti,tj->ij", rows, rows) + 1e-6 * np.eye(rows.shape[1])
        coef = np.linalg.solve(gram, np.einsum("ti,t->i", rows, target[fit, node]))
        test = test_rows & target_mask[:, node]
        errors.append(np.abs(np.einsum("ti,i->t", design[test], coef) - target[test, node]))
    return float(np.concatenate(errors).mean())


def test_same_seed_is_byte_identical_and_seeds_differ():
    a = simulate_traffic(num_nodes=20, days=3, seed=7)
    b = simulate_traffic(num_nodes=20, days=3, seed=7)
    c = simulate_traffic(num_nodes=20, days=3, seed=8)
    assert a.series.values.tobytes() == b.series.values.tobytes()
    assert np.array_equal(a.series.mask, b.series.mask)
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.distances, b.distances)
    assert np.array_equal(a.series.coords, b.series.coords)
    assert a.series.attrs["incidents"] == b.series.attrs["incidents"]
    assert not np.array_equal(a.series.values, c.series.values)
    assert not np.array_equal(a.series.coords, c.series.coords)


def test_shapes_dtypes_and_timestamps(default):
    series = default.series
    assert series.values.shape == (8064, 64, 1)
    assert series.values.dtype == np.float32
    assert series.mask.dtype == np.bool_
    assert series.channels == ("speed",)
    assert len(set(series.node_ids)) == 64
    assert series.coords.shape == (64, 2)
    lat, lon = series.coords.T
    assert 33.8 < lat.min() and lat.max() < 34.3 and -118.5 < lon.min() and lon.max() < -118.0
    steps = series.timestamps[1:] - series.timestamps[:-1]
    assert (steps == pd.Timedelta(minutes=5)).all()
    assert series.timestamps[0] == pd.Timestamp("2024-01-01")
    assert default.adjacency.shape == default.distances.shape == (64, 64)


def test_missing_readings_are_zero_and_masked(default):
    values, mask = default.series.values, default.series.mask
    missing = 1.0 - mask.mean()
    assert 0.01 < missing < 0.10
    assert (values[~mask] == 0).all()
    assert (values[mask] > 0).all()  # 0 would read as missing under null_value "zero"
    # Some dropouts last hours (dead sensors), not only single steps.
    longest = 0
    for node in range(mask.shape[1]):
        runs = np.diff(np.flatnonzero(np.diff(np.r_[1, mask[:, node, 0].astype(int), 1])))[::2]
        longest = max(longest, runs.max(initial=0))
    assert longest >= 48


def test_speeds_are_physical(default):
    observed = default.series.values[default.series.mask]
    assert 2.0 < observed.min() and observed.max() < 90.0
    assert 45.0 < observed.mean() < 65.0


def test_weekday_rush_hour_is_slower_than_weekend(default):
    series = default.series
    values, mask = series.values[..., 0], series.mask[..., 0]
    stamps = series.timestamps
    for hour in (8, 17):
        at_hour = np.asarray(stamps.hour == hour)
        weekday = at_hour & np.asarray(stamps.day_of_week < 5)
        weekend = at_hour & np.asarray(stamps.day_of_week >= 5)
        weekday_mean = values[weekday][mask[weekday]].mean()
        weekend_mean = values[weekend][mask[weekend]].mean()
        assert weekday_mean < weekend_mean - 8.0
    night = np.asarray(stamps.hour == 3)
    assert values[night][mask[night]].mean() > 55.0


def test_graph_is_connected_and_distances_are_road_metres(default):
    distances, adjacency = default.distances, default.adjacency
    assert (np.diag(distances) == 0).all()
    assert np.isinf(distances).any()
    off = ~np.eye(64, dtype=bool)
    assert (distances[off] > 0).all()
    assert ((adjacency >= 0.1) | (adjacency == 0)).all()
    assert ((adjacency > 0) == (adjacency >= 0.1)).all()
    assert (adjacency[np.isinf(distances)] == 0).all()
    # Every sensor has a downstream and an upstream neighbour in the kernel graph.
    linked = (adjacency > 0) & off
    assert linked.any(axis=1).all() and linked.any(axis=0).all()


def test_incidents_drop_speed_and_spread_upstream(default):
    series = default.series
    values = series.values[..., 0].astype(np.float64)
    mask = series.mask[..., 0]
    incidents = series.attrs["incidents"]
    assert len(incidents) > 50
    anomaly = np.where(
        mask, values - _profile(values, mask, series.timestamps, len(values)), np.nan
    )
    upstream = (default.adjacency > 0) & ~np.eye(64, dtype=bool)  # upstream[u, n]: flow u -> n
    at_node, above = [], []
    for incident in incidents:
        node, start, steps = incident["node"], incident["start"], incident["steps"]
        assert 1 <= steps <= 18 and 0.5 <= incident["severity"] <= 0.9
        at_node.append(anomaly[start : start + steps, node])
        # The queue reaches upstream sensors later, so look there during the incident's tail.
        later = slice(start + steps // 2, start + steps + 6)
        above.append(anomaly[later][:, upstream[:, node]].ravel())
    assert np.nanmean(np.concatenate(at_node)) < -15.0
    assert np.nanmean(np.concatenate(above)) < -3.0


def test_neighbours_history_improves_forecasts_on_the_road_graph_only(default):
    adjacency = default.adjacency
    own_only = _linear_mae(default, [])
    # Downstream (rows) and upstream (columns) neighbours as two separate aggregates.
    with_graph = _linear_mae(default, [adjacency, adjacency.T])
    order = np.random.default_rng(123).permutation(adjacency.shape[0])
    shuffled = adjacency[order][:, order]  # same degrees, wrong sensors
    with_shuffled = _linear_mae(default, [shuffled, shuffled.T])
    assert with_graph < 0.94 * own_only, (own_only, with_graph)
    assert with_shuffled > 0.98 * own_only, (own_only, with_shuffled)


def test_card_adapter_reads_options(tmp_path):
    card = read_card(CARD)
    assert card.format == "simulator" and card.files == ()
    assert card.expected == {"nodes": 64, "steps": 8064}
    adapter = ADAPTERS.get("simulator")
    small = type(card).from_dict(
        {
            "name": "sim-small",
            "format": "simulator",
            "frequency": "15min",
            "start": "2023-06-05",
            "options": {"nodes": 12, "days": 2, "seed": 3},
        }
    )
    loaded = adapter(small, tmp_path / "unused")
    assert loaded.series.values.shape == (192, 12, 1)
    assert loaded.series.name == "sim-small"
    assert loaded.series.freq == pd.Timedelta(minutes=15)
    assert loaded.series.timestamps[0] == pd.Timestamp("2023-06-05")
    direct = simulate_traffic(num_nodes=12, days=2, freq_minutes=15, seed=3, start="2023-06-05")
    assert np.array_equal(loaded.series.values, direct.series.values)


def test_bad_options_are_input_errors(tmp_path):
    adapter = ADAPTERS.get("simulator")
    card = read_card(CARD)
    typo = type(card).from_dict({**_card_dict(card), "options": {"node": 10}})
    with pytest.raises(InputError, match="nodes"):
        adapter(typo, tmp_path)
    odd = type(card).from_dict({**_card_dict(card), "frequency": "90s"})
    with pytest.raises(InputError, match="whole number of minutes"):
        adapter(odd, tmp_path)
    with pytest.raises(InputError):
        simulate_traffic(num_nodes=2)


def _card_dict(card) -> dict:
    return {"name": card.name, "format": card.format, "frequency": card.frequency}
