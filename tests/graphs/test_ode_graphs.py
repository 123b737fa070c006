"""STGODE spatial graph and the DTW semantic graph (train-only unless faithful)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgraph.data.series import Series
from stgraph.data.views import SeriesTrainView
from stgraph.graphs import ode_graphs
from stgraph.graphs.ode_graphs import (
    cached_pairwise_dtw,
    daily_profiles,
    dtw_banded,
    dtw_graph_from_series,
    pairwise_dtw,
    semantic_adjacency,
    stgode_spatial_adjacency,
)


def naive_dtw(x, y, radius):
    """Textbook O(L^2) DTW with |x_i - y_j| cost inside a Sakoe-Chiba band."""
    n = len(x)
    d = np.full((n + 1, n + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            if abs(i - j) <= radius:
                d[i, j] = abs(x[i - 1] - y[j - 1]) + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[n, n]


def test_dtw_hand_computed():
    # Best path (0,0) (0,1) (1,2) (2,2): |0-0| + |0-0| + |1-1| + |2-1| = 1.
    a = np.array([[0.0, 1.0, 2.0]])
    b = np.array([[0.0, 0.0, 1.0]])
    assert dtw_banded(a, b, radius=2)[0] == pytest.approx(1.0)
    # Radius 0 forbids warping: the plain L1 distance 0 + 1 + 1.
    assert dtw_banded(a, b, radius=0)[0] == pytest.approx(2.0)


@pytest.mark.parametrize("radius", [0, 1, 3, None])
def test_dtw_matches_naive_dp(radius):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(15, 24)), rng.normal(size=(15, 24))
    expected = [naive_dtw(a[p], b[p], 23 if radius is None else radius) for p in range(15)]
    np.testing.assert_allclose(dtw_banded(a, b, radius, chunk=4), expected, rtol=1e-12)


def test_pairwise_dtw_symmetric_and_cached(monkeypatch):
    rng = np.random.default_rng(1)
    profiles = rng.normal(size=(6, 20))
    dist = pairwise_dtw(profiles, 3)
    np.testing.assert_array_equal(dist, dist.T)
    assert (np.diag(dist) == 0).all()
    assert dist[1, 4] == pytest.approx(naive_dtw(profiles[1], profiles[4], 3))
    first = cached_pairwise_dtw(profiles, 3)
    monkeypatch.setattr(ode_graphs, "pairwise_dtw", lambda *a, **k: pytest.fail("cache missed"))
    np.testing.assert_array_equal(cached_pairwise_dtw(profiles, 3), first)


def test_stgode_spatial_adjacency():
    inf = np.inf
    dist = np.array([[0, 1.0, inf], [1.0, 0, 3.0], [inf, 3.0, 0]])
    adj = stgode_spatial_adjacency(dist)
    z = np.array([1.0, 3.0, 1.0, 3.0])
    z = (z - z.mean()) / z.std()  # = [-1, 1, -1, 1]
    assert adj[0, 1] == pytest.approx(np.exp(-(z[0] ** 2) / 100))
    assert adj[0, 2] == 0 and adj[0, 0] == 0
    np.testing.assert_array_equal(adj, adj.T)


def test_semantic_rules():
    dist = np.array([[0, 1, 5, 9], [1, 0, 2, 8], [5, 2, 0, 4], [9, 8, 4, 0]], dtype=float)
    topk = semantic_adjacency(dist, "topk", k=1)
    assert topk[0, 1] and topk[1, 0] and topk[2, 1] and topk[3, 2]
    assert not np.diag(topk).any()
    band = semantic_adjacency(dist, "mean-band", sigma=10.0, threshold=0.5)
    z = (dist - dist.mean()) / dist.std()
    np.testing.assert_array_equal(band > 0, (np.exp(-(z**2) / 100) > 0.5) & ~np.eye(4, dtype=bool))


def _series(days=6, nodes=5, seed=0):
    rng = np.random.default_rng(seed)
    steps = days * 24
    shape = rng.normal(size=(nodes, 24))
    values = np.tile(shape.T, (days, 1)) + 0.3 * rng.normal(size=(steps, nodes))
    stamps = pd.date_range("2020-01-01", periods=steps, freq="1h")
    values = values[:, :, None].astype(np.float32)
    return Series(values, np.ones_like(values, bool), stamps, tuple(map(str, range(nodes))))


def test_daily_profiles_mean_per_slot():
    series = _series()
    profile = daily_profiles(series, 48)
    x = series.values[:48, :, 0].astype(np.float64)
    z = (x - x.mean()) / x.std()
    np.testing.assert_allclose(profile, ((z[:24] + z[24:]) / 2).T, atol=1e-10)


def test_dtw_graph_ignores_val_and_test_unless_faithful():
    series = _series()
    train = 72
    changed = series.values.copy()
    changed[train:] = np.random.default_rng(9).normal(size=changed[train:].shape) * 5
    other = Series(changed, series.mask, series.timestamps, series.node_ids)
    np.testing.assert_array_equal(
        dtw_graph_from_series(SeriesTrainView.of(series, train), k=2),
        dtw_graph_from_series(SeriesTrainView.of(other, train), k=2),
    )
    d1 = daily_profiles(series)
    d2 = daily_profiles(other)
    assert not np.allclose(d1, d2)  # the faithful graph's input depends on the held-out days
    assert not np.array_equal(
        dtw_graph_from_series(SeriesTrainView.of(series, train), faithful=True, k=2),
        dtw_graph_from_series(SeriesTrainView.of(other, train), faithful=True, k=2),
    )
    np.testing.assert_array_equal(
        dtw_graph_from_series(SeriesTrainView.of(series, train), faithful=True),
        semantic_adjacency(pairwise_dtw(d1, 6), "mean-band"),
    )


def test_recipes_registered():
    from stgraph.data.adapters.base import RawDataset
    from stgraph.data.cards import DatasetCard
    from stgraph.graphs.recipes import build_graph

    series = _series()
    card = DatasetCard(name="toy", format="x", files=(), frequency="1h")
    dist = np.full((5, 5), np.inf)
    dist[0, 1] = dist[1, 0] = 2.0
    dist[1, 2] = dist[2, 1] = 4.0
    raw = RawDataset(series, card, distances=dist)
    spatial = build_graph(raw, {"method": "stgode-spatial"}, SeriesTrainView.of(series, 72))
    assert spatial.num_edges == 4
    semantic = build_graph(raw, {"method": "dtw", "k": 2}, SeriesTrainView.of(series, 72))
    np.testing.assert_array_equal(
        semantic.to_dense().numpy(), dtw_graph_from_series(SeriesTrainView.of(series, 72), k=2)
    )
