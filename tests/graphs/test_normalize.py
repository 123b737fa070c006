"""Normalisations against hand-computed matrices and their dense formulas."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch_geometric.utils import get_laplacian, to_dense_adj

import stgraph.graphs.normalize as normalize
from stgraph.errors import InputError
from stgraph.graphs import (
    Graph,
    chebyshev_basis,
    laplacian_eigenvectors,
    random_walk_norm,
    scaled_laplacian,
    symmetric_norm,
)

R2 = 1 / math.sqrt(2)


def dense(graph: Graph) -> np.ndarray:
    return graph.to_dense().double().numpy()


def random_graph(n: int, density: float, seed: int, loops: bool = False) -> Graph:
    rng = np.random.default_rng(seed)
    adj = rng.uniform(0.1, 2.0, (n, n)) * (rng.random((n, n)) < density)
    if not loops:
        np.fill_diagonal(adj, 0.0)
    return Graph.from_dense(adj)


# 0 - 1 - 2 with weights 1 and 2, both directions, no self loops.
PATH = Graph.from_dense(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]]))
# 0 -> 1 -> 2 with unit weights, one direction only.
CHAIN = Graph(torch.tensor([[0, 1], [1, 2]]), torch.ones(2), 3)


# ---- symmetric_norm ---------------------------------------------------------------------------


def test_symmetric_norm_hand_case():
    # A + I = [[1,1,0],[1,1,2],[0,2,1]], degrees 2, 4, 3.
    s8, s12 = math.sqrt(8), math.sqrt(12)
    expected = np.array([[1 / 2, 1 / s8, 0], [1 / s8, 1 / 4, 2 / s12], [0, 2 / s12, 1 / 3]])
    np.testing.assert_allclose(dense(symmetric_norm(PATH)), expected, rtol=1e-6)
    # Without self loops: degrees 1, 3, 2.
    no_loops = np.array(
        [
            [0, 1 / math.sqrt(3), 0],
            [1 / math.sqrt(3), 0, 2 / math.sqrt(6)],
            [0, 2 / math.sqrt(6), 0],
        ]
    )
    np.testing.assert_allclose(
        dense(symmetric_norm(PATH, add_self_loops=False)), no_loops, rtol=1e-6
    )


def test_symmetric_norm_keeps_existing_self_loop_weights():
    graph = Graph.from_dense(np.array([[0.5, 1.0], [1.0, 0.0]]))
    # Node 0 keeps its 0.5 loop, node 1 gets 1: A~ = [[0.5, 1], [1, 1]], degrees 1.5 and 2.
    expected = np.array([[0.5 / 1.5, 1 / math.sqrt(3)], [1 / math.sqrt(3), 1 / 2]])
    np.testing.assert_allclose(dense(symmetric_norm(graph)), expected, rtol=1e-6)


def test_symmetric_norm_sparse_matmul_equals_dense_formula():
    graph = random_graph(12, 0.3, seed=0)
    adj = dense(graph) + np.eye(12)
    d = adj.sum(1) ** -0.5
    formula = d[:, None] * adj * d[None, :]
    norm = symmetric_norm(graph)
    x = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    operator = torch.sparse_coo_tensor(
        norm.edge_index, norm.edge_weight.double(), (12, 12), check_invariants=True
    )
    np.testing.assert_allclose(
        torch.sparse.mm(operator, x).numpy(), formula @ x.numpy(), rtol=1e-5, atol=1e-6
    )


def test_symmetric_norm_isolated_node_gives_zero_row():
    graph = Graph(torch.tensor([[0, 1], [1, 0]]), torch.ones(2), 3)
    out = dense(symmetric_norm(graph, add_self_loops=False))
    assert np.all(out[2] == 0) and np.all(out[:, 2] == 0)
    assert out[0, 1] == pytest.approx(1.0)


# ---- random_walk_norm -------------------------------------------------------------------------


def test_random_walk_norm_hand_case():
    graph = Graph.from_dense(np.array([[0.0, 1.0, 3.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(
        dense(random_walk_norm(graph)), [[0, 0.25, 0.75], [0, 0, 1], [0, 0, 0]], rtol=1e-6
    )
    np.testing.assert_allclose(
        dense(random_walk_norm(graph, add_self_loops=True)),
        [[1 / 5, 1 / 5, 3 / 5], [0, 1 / 3, 2 / 3], [0, 0, 1]],
        rtol=1e-6,
    )


def test_random_walk_rows_sum_to_one():
    graph = random_graph(15, 0.3, seed=1, loops=True)
    out = dense(random_walk_norm(graph))
    has_edges = dense(graph).sum(1) > 0
    np.testing.assert_allclose(out.sum(1)[has_edges], 1.0, rtol=1e-6)


# ---- scaled_laplacian -------------------------------------------------------------------------


def test_scaled_laplacian_path_of_two():
    graph = Graph.from_dense(np.array([[0.0, 1.0], [1.0, 0.0]]))
    # L = [[1, -1], [-1, 1]], lambda_max = 2, L~ = L - I.
    np.testing.assert_allclose(dense(scaled_laplacian(graph)), [[0, -1], [-1, 0]], atol=1e-6)


def test_scaled_laplacian_symmetrises_a_directed_chain():
    # Path 0-1-2: L = I - D^-1/2 A D^-1/2 has eigenvalues 0, 1, 2, so L~ = L - I.
    expected = np.array([[0, -R2, 0], [-R2, 0, -R2], [0, -R2, 0]])
    np.testing.assert_allclose(dense(scaled_laplacian(CHAIN)), expected, atol=1e-6)
    # A given lambda_max is used as is: 2 L / 1 - I.
    lap = np.array([[1, -R2, 0], [-R2, 1, -R2], [0, -R2, 1]])
    np.testing.assert_allclose(
        dense(scaled_laplacian(CHAIN, lambda_max=1.0)), 2 * lap - np.eye(3), atol=1e-6
    )


def test_scaled_laplacian_matches_dcrnn_formula_with_self_loops():
    graph = random_graph(20, 0.2, seed=2, loops=True)
    adj = dense(graph)
    adj = np.maximum(adj, adj.T)
    d = adj.sum(1)
    d_inv = np.where(d > 0, d, 1.0) ** -0.5 * (d > 0)
    lap = np.eye(20) - d_inv[:, None] * adj * d_inv[None, :]
    lam = np.linalg.eigvalsh(lap).max()
    expected = 2 * lap / lam - np.eye(20)
    np.testing.assert_allclose(dense(scaled_laplacian(graph)), expected, atol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_scaled_laplacian_spectrum_in_unit_interval(seed):
    graph = random_graph(30, 0.15, seed=seed)
    values = np.linalg.eigvalsh(dense(scaled_laplacian(graph)))
    assert values.min() >= -1 - 1e-5 and values.max() <= 1 + 1e-5
    assert values.max() == pytest.approx(1.0, abs=1e-5)


def test_scaled_laplacian_empty_graph_and_bad_lambda():
    empty = Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), 3)
    np.testing.assert_allclose(dense(scaled_laplacian(empty)), np.eye(3))
    with pytest.raises(InputError, match="lambda_max must be > 0"):
        scaled_laplacian(PATH, lambda_max=0.0)


# ---- chebyshev_basis --------------------------------------------------------------------------


def test_chebyshev_basis_matches_dense_recursion():
    graph = random_graph(10, 0.3, seed=5)
    basis = chebyshev_basis(graph, order=5)
    lap = dense(scaled_laplacian(graph))
    expected = [np.eye(10), lap]
    for _ in range(3):
        expected.append(2 * lap @ expected[-1] - expected[-2])
    assert len(basis) == 5
    for ours, ref in zip(basis, expected):
        assert ours.shape == (10, 10) and ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_chebyshev_basis_hand_case_and_order():
    # L~ of the 3-path: T_2 = 2 L~^2 - I.
    lap = np.array([[0, -R2, 0], [-R2, 0, -R2], [0, -R2, 0]])
    t2 = 2 * lap @ lap - np.eye(3)  # = [[0,0,1],[0,1,0],[1,0,0]]
    np.testing.assert_allclose(t2, [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
    basis = chebyshev_basis(CHAIN, order=3)
    np.testing.assert_allclose(basis[2].numpy(), t2, atol=1e-6)
    assert len(chebyshev_basis(CHAIN, order=1)) == 1
    with pytest.raises(InputError, match="order must be an integer >= 1"):
        chebyshev_basis(CHAIN, order=0)


# ---- laplacian_eigenvectors -------------------------------------------------------------------


def test_laplacian_eigenvectors_path_of_three():
    # Normalised Laplacian of 0-1-2: eigenvalues 0, 1, 2; for 1: [1, 0, -1]/sqrt2 (tie on the
    # largest magnitude: the first wins, so it is positive); for 2: [1, -sqrt2, 1]/2, flipped so
    # that the middle entry is positive.
    vectors = laplacian_eigenvectors(CHAIN, k=2)
    expected = np.array([[R2, -0.5], [0.0, R2], [-R2, -0.5]])
    assert vectors.shape == (3, 2) and vectors.dtype == torch.float32
    np.testing.assert_allclose(vectors.numpy(), expected, atol=1e-6)


def test_laplacian_eigenvectors_are_eigenvectors_and_orthonormal():
    graph = random_graph(25, 0.2, seed=6)
    vectors = laplacian_eigenvectors(graph, k=6).double().numpy()
    sym = Graph.from_dense(np.maximum(dense(graph), dense(graph).T))
    index, weight = get_laplacian(sym.edge_index, sym.edge_weight.double(), "sym", num_nodes=25)
    lap = to_dense_adj(index, edge_attr=weight, max_num_nodes=25)[0].numpy()
    values = np.linalg.eigvalsh(lap)
    values = values[values > 1e-6][:6]
    np.testing.assert_allclose(lap @ vectors, vectors * values, atol=1e-5)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(6), atol=1e-5)
    peak = np.abs(vectors).argmax(0)
    assert np.all(vectors[peak, range(6)] > 0)


def test_laplacian_eigenvectors_arpack_path_matches_dense(monkeypatch):
    graph = random_graph(40, 0.2, seed=7)
    full = laplacian_eigenvectors(graph, k=4)
    monkeypatch.setattr(normalize, "_DENSE_EIG_MAX", 0)
    sparse = laplacian_eigenvectors(graph, k=4)
    np.testing.assert_allclose(sparse.numpy(), full.numpy(), atol=1e-4)


def test_laplacian_eigenvectors_skip_one_zero_per_component():
    # Two separate edges 0-1 and 2-3: eigenvalues 0, 0, 2, 2, so only two are non-trivial.
    graph = Graph(torch.tensor([[0, 2], [1, 3]]), torch.ones(2), 4)
    vectors = laplacian_eigenvectors(graph, k=2).numpy()
    lap = np.eye(4) - np.kron(np.eye(2), [[0, 1], [1, 0]])
    np.testing.assert_allclose(lap @ vectors, 2 * vectors, atol=1e-6)
    with pytest.raises(InputError, match="only 2 non-trivial eigenvalue"):
        laplacian_eigenvectors(graph, k=3)
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        laplacian_eigenvectors(graph, k=0)


# ---- real data --------------------------------------------------------------------------------


@pytest.mark.real_data
def test_normalisations_on_dcrnn_pems_bay(shared_data):
    with open(shared_data / "traffic/pems-bay/adj_mx_bay.pkl", "rb") as f:
        _, _, adj = pickle.load(f, encoding="latin1")
    graph = Graph.from_dense(adj)
    # DCRNN's random-walk matrix: D^-1 A with D the row sums.
    np.testing.assert_allclose(
        dense(random_walk_norm(graph)), adj / adj.sum(1, keepdims=True), atol=1e-6
    )
    values = np.linalg.eigvalsh(dense(scaled_laplacian(graph)))
    assert values.min() >= -1 - 1e-5 and values.max() <= 1 + 1e-5
    vectors = laplacian_eigenvectors(graph, k=8)
    assert vectors.shape == (325, 8)
    np.testing.assert_allclose(vectors.T @ vectors, torch.eye(8), atol=1e-4)
