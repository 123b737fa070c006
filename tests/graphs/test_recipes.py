"""Graph recipes: dispatch, parameter checks, missing inputs, and the train-only rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.base import RawDataset
from stgraph.data.cards import DatasetCard
from stgraph.data.series import Series
from stgraph.data.views import SeriesTrainView
from stgraph.errors import InputError
from stgraph.graphs import GRAPH_RECIPES, build_graph, gaussian_kernel, masked_correlation

INF = np.inf


def make_raw(values: np.ndarray, mask=None, adjacency=None, distances=None, coords=None):
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[:, :, None]
    t, n, _ = values.shape
    series = Series(
        values=values,
        mask=np.ones(values.shape, bool) if mask is None else mask,
        timestamps=pd.date_range("2020-01-01", periods=t, freq="5min"),
        node_ids=tuple(str(i) for i in range(n)),
        name="toy",
        coords=coords,
    )
    card = DatasetCard(name="toy", format="dcrnn", files=(), frequency="5min")
    return RawDataset(series, card, adjacency=adjacency, distances=distances)


def build(raw: RawDataset, recipe: dict, steps: int):
    """The recipe's graph with the first ``steps`` steps as training data."""
    return build_graph(raw, recipe, SeriesTrainView.of(raw.series, steps))


def test_registered_recipes():
    core = {"none", "adjacency", "gaussian-kernel", "stgcn-kernel", "knn", "correlation-knn"}
    assert core <= set(GRAPH_RECIPES.names())


def test_none_and_adjacency():
    adj = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 2.0], [0.0, 0.0, 0.0]])
    raw = make_raw(np.zeros((4, 3)), adjacency=adj)
    empty = build(raw, {"method": "none"}, steps=4)
    assert empty.num_nodes == 3 and empty.num_edges == 0
    np.testing.assert_array_equal(build(raw, {"method": "adjacency"}, 4).to_dense(), adj)


def test_kernels_read_distances_and_pass_params():
    d = np.array([[0.0, 1.0, INF], [1.0, 0.0, 2.0], [INF, 2.0, 0.0]])
    raw = make_raw(np.zeros((4, 3)), distances=d)
    recipe = {"method": "gaussian-kernel", "sigma": 2.0, "threshold": 0.5}
    graph = build(raw, recipe, 4)
    assert recipe == {"method": "gaussian-kernel", "sigma": 2.0, "threshold": 0.5}  # not mutated
    a = math.exp(-0.25)
    np.testing.assert_allclose(graph.to_dense(), [[1, a, 0], [a, 1, 0], [0, 0, 1]], rtol=1e-6)
    assert gaussian_kernel(d).num_edges == build(raw, {"method": "gaussian-kernel"}, 4).num_edges
    stgcn = build(raw, {"method": "stgcn-kernel", "scale": 1.0, "sigma2": 4.0}, 4)
    # exp(-1/4) >= 0.5 kept, exp(-1) dropped, diagonal zero.
    np.testing.assert_allclose(stgcn.to_dense(), [[0, a, 0], [a, 0, 0], [0, 0, 0]], rtol=1e-6)


def test_knn_uses_coordinates_with_haversine():
    coords = np.array([[60.0, 0.0], [60.0, 1.5], [61.0, 0.0]])
    raw = make_raw(np.zeros((4, 3)), coords=coords)
    graph = build(raw, {"method": "knn", "k": 1}, 4)
    assert graph.edge_index[:, graph.edge_index[0] == 0].tolist() == [[0], [1]]
    sym = build(raw, {"method": "knn", "k": 1, "symmetric": True}, 4)
    assert np.array_equal(sym.to_dense(), sym.to_dense().T)


def test_missing_inputs_name_the_dataset_and_the_alternatives():
    raw = make_raw(np.zeros((4, 3)), adjacency=np.eye(3))
    with pytest.raises(
        InputError,
        match=r"needs distances, which dataset 'toy' does not have; use method 'adjacency' or "
        r"'correlation-knn' or 'none'",
    ):
        build(raw, {"method": "gaussian-kernel"}, 4)
    with pytest.raises(InputError, match="needs coordinates"):
        build(raw, {"method": "knn", "k": 2}, 4)
    with pytest.raises(InputError, match="needs an adjacency matrix"):
        build(make_raw(np.zeros((4, 3))), {"method": "adjacency"}, 4)
    with pytest.raises(InputError, match=r"shape \(2, 2\) but the series has 3 nodes"):
        build(make_raw(np.zeros((4, 3)), adjacency=np.eye(2)), {"method": "adjacency"}, 4)


def test_bad_recipes():
    raw = make_raw(np.zeros((4, 3)), distances=np.zeros((3, 3)))
    with pytest.raises(InputError, match=r"unknown parameter\(s\) \['sigam'\].*sigma"):
        build(raw, {"method": "gaussian-kernel", "sigam": 1.0}, 4)
    with pytest.raises(InputError, match=r"needs parameter\(s\) \['k'\]"):
        build(raw, {"method": "correlation-knn"}, 4)
    with pytest.raises(InputError, match=r"Unknown graph recipe 'gaussian'.*gaussian-kernel"):
        build(raw, {"method": "gaussian"}, 4)
    with pytest.raises(InputError, match="has no 'method'"):
        build(raw, {"k": 3}, 4)
    with pytest.raises(InputError, match="accepts: none"):
        build(raw, {"method": "none", "k": 3}, 4)


def test_masked_correlation_is_pairwise_complete():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 4))
    mask = rng.random((50, 4)) > 0.2
    corr = masked_correlation(values, mask)
    for i in range(4):
        for j in range(4):
            both = mask[:, i] & mask[:, j]
            ref = np.corrcoef(values[both, i], values[both, j])[0, 1]
            assert corr[i, j] == pytest.approx(ref, abs=1e-10)
    # A constant series has no correlation.
    values[:, 3] = 7.0
    assert np.isnan(masked_correlation(values, mask)[0, 3])


def test_correlation_knn_hand_case():
    # Node 1 = 2 * node 0 + 1 (r = 1); node 2 correlates 0.8 with both (tie -> node 0 first).
    x = np.array([[1.0, 3.0, 1.0], [2.0, 5.0, 3.0], [3.0, 7.0, 2.0], [4.0, 9.0, 4.0]])
    graph = build(make_raw(x), {"method": "correlation-knn", "k": 1}, steps=4)
    # Distances sqrt(2 (1 - r)) = 0, 0, c: sigma = std([0, 0, c]) = c sqrt(2) / 3, so
    # (c / sigma)^2 = 4.5.
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = 1.0
    expected[2, 0] = math.exp(-4.5)
    np.testing.assert_allclose(graph.to_dense(), expected, rtol=1e-5)


def test_correlation_knn_reads_only_the_training_steps():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 1))
    train = np.hstack([base, base + 0.1 * rng.normal(size=(200, 1)), rng.normal(size=(200, 2))])
    # After the training steps node 0 moves with node 3 instead of node 1.
    later = rng.normal(size=(800, 4))
    later[:, 3] = later[:, 0]
    values = np.vstack([train, later])
    full_raw, train_raw = make_raw(values), make_raw(train)
    recipe = {"method": "correlation-knn", "k": 1}
    from_split = build(full_raw, recipe, steps=200)
    from_train = build(train_raw, recipe, steps=200)
    np.testing.assert_array_equal(from_split.to_dense(), from_train.to_dense())
    assert from_split.to_dense()[0, 1] > 0
    peeking = build(full_raw, recipe, steps=1000)
    assert peeking.to_dense()[0, 3] > 0 and peeking.to_dense()[0, 1] == 0


def test_correlation_knn_checks_its_arguments():
    raw = make_raw(np.random.default_rng(2).normal(size=(10, 3)))
    with pytest.raises(ValueError, match=r"train steps must be in \[1, 10\]"):
        build(raw, {"method": "correlation-knn", "k": 1}, steps=11)
    with pytest.raises(InputError, match="the training part has 1 step"):
        build(raw, {"method": "correlation-knn", "k": 1}, steps=1)
    with pytest.raises(InputError, match="k must be an integer in"):
        build(raw, {"method": "correlation-knn", "k": 3}, steps=10)
    with pytest.raises(InputError, match="channel 1 out of range"):
        build(raw, {"method": "correlation-knn", "k": 1, "channel": 1}, steps=10)
