"""Graph builders against hand-computed small cases and DCRNN's shipped PEMS-BAY graph."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.errors import InputError
from stgraph.graphs import (
    Graph,
    from_adjacency,
    from_edge_list,
    gaussian_kernel,
    knn_graph,
    stgcn_kernel,
    to_distance_matrix,
)

INF = np.inf

# A 3-node road 0 - 1 - 2 with lengths 1 and 2, both directions, no road 0 - 2.
PATH = np.array([[0.0, 1.0, INF], [1.0, 0.0, 2.0], [INF, 2.0, 0.0]])


def dense(graph: Graph) -> np.ndarray:
    return graph.to_dense().numpy()


# ---- gaussian_kernel --------------------------------------------------------------------------


def test_gaussian_kernel_known_sigma():
    graph = gaussian_kernel(PATH, sigma=2.0, threshold=0.1)
    a, b = math.exp(-0.25), math.exp(-1.0)  # (1/2)^2 and (2/2)^2
    expected = np.array([[1.0, a, 0.0], [a, 1.0, b], [0.0, b, 1.0]])
    np.testing.assert_allclose(dense(graph), expected, rtol=1e-6)
    assert graph.edge_weight.dtype == torch.float32
    assert graph.num_edges == 7


def test_gaussian_kernel_default_sigma_is_std_of_finite_distances():
    # Finite entries: 0, 0, 0, 1, 1, 2, 2 -> mean 6/7, population variance 238/343.
    sigma = math.sqrt(238 / 343)
    graph = gaussian_kernel(PATH, threshold=0.0)
    a, b = math.exp(-((1 / sigma) ** 2)), math.exp(-((2 / sigma) ** 2))
    expected = np.array([[1.0, a, 0.0], [a, 1.0, b], [0.0, b, 1.0]])
    np.testing.assert_allclose(dense(graph), expected, rtol=1e-6)


def test_gaussian_kernel_threshold_and_self_loops():
    graph = gaussian_kernel(PATH, sigma=2.0, threshold=0.5, self_loops=False)
    a = math.exp(-0.25)
    np.testing.assert_allclose(dense(graph), [[0, a, 0], [a, 0, 0], [0, 0, 0]], rtol=1e-6)
    # DCRNN keeps a weight equal to the threshold (it zeroes only w < threshold).
    assert gaussian_kernel(PATH, sigma=2.0, threshold=a).num_edges == 5


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((2, 3)), "square"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), "negative"),
        (np.full((2, 2), INF), "no finite"),
        (np.zeros((2, 2)), "sigma"),
    ],
)
def test_gaussian_kernel_rejects_bad_input(matrix, message):
    with pytest.raises(InputError, match=message):
        gaussian_kernel(matrix)


# ---- stgcn_kernel -----------------------------------------------------------------------------


def test_stgcn_kernel_hand_case():
    # Metres: 0-1 2 km, 1-2 5 km, 0-2 10 km, 2-3 co-located (0 m), 0-3 no road.
    d = np.array(
        [
            [0.0, 2000.0, 10000.0, INF],
            [2000.0, 0.0, 5000.0, 7000.0],
            [10000.0, 5000.0, 0.0, 0.0],
            [INF, 7000.0, 0.0, 0.0],
        ]
    )
    graph = stgcn_kernel(d)
    # exp(-(0.2^2)/0.1) = exp(-0.4) kept; exp(-2.5), exp(-10), exp(-4.9) < 0.5 dropped;
    # distance 0 off the diagonal gives 1; the diagonal is zeroed.
    w = math.exp(-0.4)
    expected = np.array([[0, w, 0, 0], [w, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_allclose(dense(graph), expected, rtol=1e-6)


def test_stgcn_kernel_keeps_a_binary_matrix_as_is():
    binary = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dense(stgcn_kernel(binary)), binary)


def test_stgcn_kernel_epsilon_is_inclusive():
    d = np.array([[0.0, 1000.0], [1000.0, 0.0]])
    w = math.exp(-0.1)  # (0.1)^2 / 0.1
    assert stgcn_kernel(d, epsilon=float(np.float64(w))).num_edges == 2
    assert stgcn_kernel(d, epsilon=w + 1e-9).num_edges == 0


# ---- knn_graph --------------------------------------------------------------------------------


def test_knn_graph_euclidean_hand_case():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    # k=1: 0->1 (1), 1->0 (1), 2->1 (2), 3->2 (4); std of [1, 1, 2, 4] = sqrt(1.5).
    graph = knn_graph(points, k=1)
    w = {d: math.exp(-(d**2) / 1.5) for d in (1, 2, 4)}
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = w[1]
    expected[2, 1] = w[2]
    expected[3, 2] = w[4]
    np.testing.assert_allclose(dense(graph), expected, rtol=1e-6)
    sym = dense(knn_graph(points, k=1, symmetric=True))
    expected[1, 2], expected[2, 3] = w[2], w[4]
    np.testing.assert_allclose(sym, expected, rtol=1e-6)


def test_knn_graph_haversine_uses_great_circle_distance():
    # At 60 degrees north, 1.5 degrees of longitude (~83 km) is nearer than 1 of latitude (111 km);
    # treating degrees as plane coordinates would get this backwards.
    points = np.array([[60.0, 0.0], [60.0, 1.5], [61.0, 0.0]])
    hav = knn_graph(points, k=1, metric="haversine")
    assert (hav.edge_index[:, hav.edge_index[0] == 0] == torch.tensor([[0], [1]])).all()
    flat = knn_graph(points, k=1, metric="euclidean")
    assert (flat.edge_index[:, flat.edge_index[0] == 0] == torch.tensor([[0], [2]])).all()


def test_knn_graph_haversine_weights_on_the_equator():
    points = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    graph = knn_graph(points, k=1, metric="haversine")
    # Distances a, a, 2a (a = 1 degree of arc): sigma = a * sqrt(2) / 3, so (d / sigma)^2 is
    # 4.5 for d = a and 18 for d = 2a, whatever the Earth's radius.
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = math.exp(-4.5)
    expected[2, 1] = math.exp(-18.0)
    np.testing.assert_allclose(dense(graph), expected, rtol=1e-5)


def test_knn_graph_equal_distances_and_duplicate_points():
    # A square: every nearest distance is 1, so sigma = 0 and all weights are 1.
    square = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    graph = knn_graph(square, k=2)
    assert graph.num_edges == 8 and torch.all(graph.edge_weight == 1)
    assert not (graph.edge_index[0] == graph.edge_index[1]).any()
    # Two nodes at the same spot: each still gets one neighbour that is not itself.
    twins = knn_graph(np.array([[0.0], [0.0], [5.0]]), k=1)
    assert not (twins.edge_index[0] == twins.edge_index[1]).any()
    assert twins.num_edges == 3


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        (np.zeros(4), {"k": 1}, r"\[N, D\]"),
        (np.zeros((3, 2)), {"k": 3}, r"k must be an integer in \[1, 2\]"),
        (np.zeros((3, 2)), {"k": 0}, "k must be"),
        (np.array([[0.0, 0.0], [np.nan, 1.0]]), {"k": 1}, "NaN"),
        (np.zeros((3, 3)), {"k": 1, "metric": "haversine"}, r"\[N, 2\]"),
        (np.array([[100.0, 0.0], [0.0, 0.0]]), {"k": 1, "metric": "haversine"}, "latitude"),
        (np.zeros((3, 2)), {"k": 1, "metric": "cosine"}, "unknown metric"),
    ],
)
def test_knn_graph_rejects_bad_input(points, kwargs, message):
    with pytest.raises(InputError, match=message):
        knn_graph(points, **kwargs)


# ---- from_adjacency ---------------------------------------------------------------------------


def test_from_adjacency_any_nonzero_is_an_edge():
    adj = np.array([[0.0, 0.5, 0.0], [2.0, 0.0, 0.0], [0.0, 1e-6, 3.0]])
    graph = from_adjacency(adj)
    assert graph.edge_index.tolist() == [[0, 1, 2, 2], [1, 0, 1, 2]]
    np.testing.assert_allclose(graph.edge_weight.numpy(), [0.5, 2.0, 1e-6, 3.0], rtol=1e-6)
    assert from_adjacency(torch.eye(2)).num_edges == 2


@pytest.mark.parametrize(
    ("adj", "message"),
    [
        (np.ones((2, 3)), "square"),
        (np.ones(3), "square"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), "NaN"),
        (np.array([[0.0, INF], [0.0, 0.0]]), "inf"),
        (np.array([[0.0, -0.5], [0.0, 0.0]]), r"negative weights \(first at \(0, 1\)\)"),
    ],
)
def test_from_adjacency_rejects_bad_matrices(adj, message):
    with pytest.raises(InputError, match=message):
        from_adjacency(adj, what="los_adj.csv")
    with pytest.raises(InputError, match=r"los_adj\.csv"):
        from_adjacency(adj, what="los_adj.csv")


# ---- from_edge_list ---------------------------------------------------------------------------


IDS = ["a", "b", "c"]


def test_from_edge_list_maps_ids_and_keeps_zero_weights():
    rows = pd.DataFrame({"from": ["b", "a", "c"], "to": ["c", "b", "c"], "cost": [2.0, 1.0, 0.0]})
    graph = from_edge_list(rows, IDS)
    assert graph.edge_index.tolist() == [[0, 1, 2], [1, 2, 2]]
    assert graph.edge_weight.tolist() == [1.0, 2.0, 0.0]
    expected = np.array([[INF, 1.0, INF], [INF, INF, 2.0], [INF, INF, 0.0]])
    np.testing.assert_array_equal(to_distance_matrix(graph), expected)


def test_from_edge_list_numeric_ids_match_string_ids():
    rows = np.array([[400001, 400017, 5.5], [400017.0, 400030.0, 1.0]])
    graph = from_edge_list(rows, ("400001", "400017", "400030"))
    assert graph.edge_index.tolist() == [[0, 1], [1, 2]]
    unweighted = from_edge_list(pd.DataFrame({"s": [1, 2], "t": [2, 0]}), [0, 1, 2])
    assert unweighted.edge_weight.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("rule", "weight"),
    [("first", 3.0), ("last", 2.0), ("min", 1.0), ("max", 5.0), ("mean", 11.0 / 4.0)],
)
def test_from_edge_list_duplicate_rules(rule, weight):
    rows = [("a", "b", 3.0), ("b", "c", 9.0), ("a", "b", 1.0), ("a", "b", 5.0), ("a", "b", 2.0)]
    graph = from_edge_list(pd.DataFrame(rows), IDS, duplicates=rule)
    assert graph.edge_index.tolist() == [[0, 1], [1, 2]]
    assert graph.edge_weight.tolist() == pytest.approx([weight, 9.0])


def test_from_edge_list_duplicates_error_names_the_pair():
    rows = pd.DataFrame([("a", "b", 3.0), ("a", "b", 1.0)])
    with pytest.raises(InputError, match=r"pair \(a, b\) is listed 2 times"):
        from_edge_list(rows, IDS, duplicates="error", what="PEMS08.csv")


def test_from_edge_list_symmetric():
    rows = pd.DataFrame([("a", "b", 3.0), ("b", "a", 1.0), ("b", "c", 2.0)])
    first = from_edge_list(rows, IDS, symmetric=True)
    np.testing.assert_array_equal(
        to_distance_matrix(first), [[INF, 3.0, INF], [1.0, INF, 2.0], [INF, 2.0, INF]]
    )
    smallest = from_edge_list(rows, IDS, symmetric=True, duplicates="min")
    np.testing.assert_array_equal(
        to_distance_matrix(smallest), [[INF, 1.0, INF], [1.0, INF, 2.0], [INF, 2.0, INF]]
    )


def test_from_edge_list_unknown_ids():
    rows = pd.DataFrame([("a", "b", 1.0), ("b", "zz", 2.0), ("yy", "a", 1.0)])
    with pytest.raises(InputError, match=r"row 1 names node id 'zz'.*2 row\(s\)"):
        from_edge_list(rows, IDS)
    kept = from_edge_list(rows, IDS, unknown="drop")
    assert kept.edge_index.tolist() == [[0], [1]]


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        (np.zeros((2, 4)), {}, "2 or 3 columns"),
        (pd.DataFrame([("a", "b", "x")]), {}, "row 0 has a missing or non-numeric weight"),
        (pd.DataFrame([("a", "b", 1.0)]), {"duplicates": "sum"}, "duplicates must be"),
        (pd.DataFrame([("a", "b", 1.0)]), {"unknown": "skip"}, "unknown must be"),
    ],
)
def test_from_edge_list_rejects_bad_input(rows, kwargs, message):
    with pytest.raises(InputError, match=message):
        from_edge_list(rows, IDS, **kwargs)
    with pytest.raises(InputError, match="'a' appears more than once"):
        from_edge_list(pd.DataFrame([("a", "b")]), ["a", "a", "b"])


# ---- real data --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pems_bay_pickle(shared_data):
    with open(shared_data / "traffic/pems-bay/adj_mx_bay.pkl", "rb") as f:
        sensor_ids, sensor_id_to_ind, adj = pickle.load(f, encoding="latin1")
    return list(sensor_ids), sensor_id_to_ind, adj


@pytest.mark.real_data
def test_gaussian_kernel_reproduces_dcrnn_pems_bay(shared_data, pems_bay_pickle):
    sensor_ids, sensor_id_to_ind, adj = pems_bay_pickle
    assert all(sensor_id_to_ind[s] == i for i, s in enumerate(sensor_ids))
    # DCRNN's file has no header: from, to, metres.
    rows = pd.read_csv(shared_data / "traffic/pems-bay/distances_bay_2017.csv", header=None)
    assert rows.shape == (8358, 3)
    roads = from_edge_list(rows, sensor_ids, duplicates="error")
    distances = to_distance_matrix(roads)
    assert np.isfinite(distances).sum() == 8358
    graph = gaussian_kernel(distances)
    ours = dense(graph)
    assert adj.shape == (325, 325)
    assert np.abs(ours - adj).max() < 1e-5
    assert graph.num_edges == np.count_nonzero(adj) == 2694
    np.testing.assert_array_equal(np.diag(ours), np.ones(325))


@pytest.mark.real_data
def test_from_adjacency_on_dcrnn_pickle(pems_bay_pickle):
    _, _, adj = pems_bay_pickle
    graph = from_adjacency(adj)
    assert graph.num_nodes == 325 and graph.num_edges == 2694
    np.testing.assert_array_equal(dense(graph), adj)


@pytest.mark.real_data
def test_knn_graph_on_pems_bay_sensor_locations(shared_data, pems_bay_pickle):
    sensor_ids, _, _ = pems_bay_pickle
    # No header: sensor_id, latitude, longitude, in the pickle's sensor order.
    loc = pd.read_csv(shared_data / "traffic/pems-bay/graph_sensor_locations_bay.csv", header=None)
    assert loc[0].astype(str).tolist() == sensor_ids
    graph = knn_graph(loc[[1, 2]].to_numpy(), k=5, metric="haversine")
    out_degree = torch.bincount(graph.edge_index[0], minlength=325)
    assert torch.all(out_degree == 5)
    assert torch.all((graph.edge_weight > 0) & (graph.edge_weight <= 1))
    sym = knn_graph(loc[[1, 2]].to_numpy(), k=5, metric="haversine", symmetric=True)
    np.testing.assert_array_equal(dense(sym), dense(sym).T)
    assert sym.num_edges >= graph.num_edges


@pytest.mark.real_data
def test_stgcn_kernel_on_pemsd7_distances(shared_data):
    w = np.loadtxt(shared_data / "traffic/pemsd7-m/W_228.csv", delimiter=",")
    graph = stgcn_kernel(w)
    ours = dense(graph)
    assert ours.shape == (228, 228)
    assert np.all(np.diag(ours) == 0)
    assert np.all(ours[ours > 0] >= 0.5 - 1e-7)
    np.testing.assert_array_equal(ours, ours.T)  # W_228 is symmetric
    # The rule directly, in float64, on this matrix: same support and weights.
    kernel = np.exp(-((w / 1e4) ** 2) / 0.1)
    kernel = np.where((kernel >= 0.5) & ~np.eye(228, dtype=bool), kernel, 0.0)
    np.testing.assert_allclose(ours, kernel, atol=1e-6)
    assert graph.num_edges == np.count_nonzero(kernel)


@pytest.mark.real_data
def test_from_edge_list_on_pems08_duplicates(shared_data):
    rows = pd.read_csv(shared_data / "traffic/pems08/PEMS08.csv")
    assert rows.columns.tolist() == ["from", "to", "cost"]
    ids = [str(i) for i in range(170)]
    with pytest.raises(InputError, match="listed 2 times"):
        from_edge_list(rows, ids, duplicates="error", what="PEMS08.csv")
    graph = from_edge_list(rows, ids)
    assert graph.num_edges == len(rows) - int(rows.duplicated(["from", "to"]).sum())
    # The repeated rows carry the same cost, so every rule agrees.
    for rule in ("last", "min", "max", "mean"):
        assert torch.allclose(
            from_edge_list(rows, ids, duplicates=rule).edge_weight, graph.edge_weight
        )
