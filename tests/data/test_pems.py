"""PEMS0X (.npz + edge list) and PeMSD7(M) adapters on the real edge lists and distance matrix."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.pems import load_pems_npz, load_pemsd7m
from stgraph.data.cards import cards_dir, read_card
from stgraph.data.windows import split_samples
from stgraph.errors import InputError

NODES = {"pems03": 358, "pems04": 307, "pems07": 883, "pems08": 170}


def _layout(tmp_path, shared_data, name, steps=576, channels=3):
    """The canonical folder: the real edge list (and id file) plus a small PEMS0X.npz."""
    up = name.upper()
    source = shared_data / "traffic" / name
    shutil.copy(source / f"{up}.csv", tmp_path / f"{up}.csv")
    if (source / f"{up}.txt").is_file():
        shutil.copy(source / f"{up}.txt", tmp_path / f"{up}.txt")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 500, size=(steps, NODES[name], channels)).astype(np.float64)
    np.savez(tmp_path / f"{up}.npz", data=data)
    return data


@pytest.mark.parametrize("name", ["pems03", "pems04", "pems08"])
def test_pems_npz_loads_real_edge_lists(tmp_path, shared_data, name):
    data = _layout(tmp_path, shared_data, name)
    card = read_card(cards_dir() / f"{name}.yaml")
    raw = load_pems_npz(card, tmp_path)
    series = raw.series
    n = NODES[name]
    assert series.values.shape == (576, n, 1)
    np.testing.assert_array_equal(series.values[..., 0], data[..., 0].astype(np.float32))
    assert series.mask.all()  # flow 0 is a real count
    assert series.timestamps[0] == pd.Timestamp(card.start)
    assert series.freq == pd.Timedelta("5min")
    dist = raw.distances
    assert dist.shape == (n, n)
    np.testing.assert_array_equal(dist, dist.T)
    assert (np.diag(dist) == 0).all()
    edges = pd.read_csv(shared_data / "traffic" / name / f"{name.upper()}.csv")
    ids = list(series.node_ids)
    pos = {node: i for i, node in enumerate(ids)}
    pairs = {
        tuple(sorted((pos[str(int(a))], pos[str(int(b))])))
        for a, b in zip(edges.iloc[:, 0], edges.iloc[:, 1])
        if a != b
    }
    assert raw.adjacency.sum() == 2 * len(pairs)
    i, j = next(iter(pairs))
    assert np.isfinite(dist[i, j]) and raw.adjacency[i, j] == 1 and raw.adjacency[j, i] == 1


def test_pems03_maps_sensor_ids(tmp_path, shared_data):
    _layout(tmp_path, shared_data, "pems03", channels=1)
    raw = load_pems_npz(read_card(cards_dir() / "pems03.yaml"), tmp_path)
    ids = (shared_data / "traffic" / "pems03" / "PEMS03.txt").read_text().split()
    assert list(raw.series.node_ids) == ids
    first = pd.read_csv(shared_data / "traffic" / "pems03" / "PEMS03.csv").iloc[0]
    i, j = ids.index(str(int(first["from"]))), ids.index(str(int(first["to"])))
    assert raw.distances[i, j] == pytest.approx(first["distance"])


def test_pems08_duplicate_rows_collapse(tmp_path, shared_data):
    _layout(tmp_path, shared_data, "pems08")
    edges = pd.read_csv(shared_data / "traffic" / "pems08" / "PEMS08.csv")
    assert edges.duplicated(["from", "to"]).sum() == 18  # the file's known repeats
    raw = load_pems_npz(read_card(cards_dir() / "pems08.yaml"), tmp_path)
    unique = edges.drop_duplicates(["from", "to"])
    for a, b, cost in unique.itertuples(index=False):
        assert raw.distances[int(a), int(b)] <= cost + 1e-4
    undirected = {tuple(sorted(p)) for p in zip(unique["from"], unique["to"])}
    assert int(np.isfinite(raw.distances).sum()) == 2 * len(undirected) + 170


def test_pems_channels_option_and_errors(tmp_path, shared_data):
    _layout(tmp_path, shared_data, "pems04")
    card = read_card(cards_dir() / "pems04.yaml")
    multi = card.__class__(**{**card.__dict__, "options": {**card.options, "channels": [0, 1, 2]}})
    raw = load_pems_npz(multi, tmp_path)
    assert raw.series.channels == ("flow", "occupancy", "speed")
    bad = card.__class__(**{**card.__dict__, "options": {**card.options, "channel": 5}})
    with pytest.raises(InputError, match="out of range"):
        load_pems_npz(bad, tmp_path)
    (tmp_path / "PEMS04.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="PEMS04.npz"):
        load_pems_npz(card, tmp_path)


def test_pemsd7m_weekday_timestamps_and_within_day_windows(tmp_path, shared_data):
    shutil.copy(shared_data / "traffic" / "pemsd7-m" / "W_228.csv", tmp_path / "W_228.csv")
    rng = np.random.default_rng(1)
    speeds = rng.uniform(20, 70, size=(288 * 5, 228))
    pd.DataFrame(speeds).to_csv(tmp_path / "V_228.csv", header=False, index=False)
    card = read_card(cards_dir() / "pemsd7m.yaml")
    card = card.__class__(**{**card.__dict__, "start": "2012-05-03 00:00"})  # a Thursday
    raw = load_pemsd7m(card, tmp_path)
    stamps = raw.series.timestamps
    assert raw.series.values.shape == (1440, 228, 1)
    assert stamps.dayofweek.max() <= 4  # weekdays only
    assert stamps[2 * 288 - 1] == pd.Timestamp("2012-05-04 23:55")
    assert stamps[2 * 288] == pd.Timestamp("2012-05-07 00:00")  # Friday -> Monday
    assert raw.distances.shape == (228, 228) and raw.adjacency is None
    assert card.split["within_day"] is True
    splits = split_samples(stamps, 12, 12, ratios=[0.6, 0.2, 0.2], within_day=True)
    every = np.concatenate([splits.train, splits.val, splits.test])
    days = stamps.normalize()
    assert (days[every - 11] == days[every + 12]).all()
