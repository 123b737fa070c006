from __future__ import annotations

import numpy as np
import pytest
import torch

from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.graphs.stocks import (
    correlation_topk_graph,
    netmf_embedding,
    netmf_matrix,
    sector_graph,
)


def _edges(graph: Graph) -> dict[tuple[int, int], float]:
    src, dst = graph.edge_index.tolist()
    return {(s, d): round(w, 6) for s, d, w in zip(src, dst, graph.edge_weight.tolist())}


def test_correlation_topk_by_hand() -> None:
    base = np.array([1.0, -1.0, 2.0, 0.0, -2.0])
    returns = np.stack([base, base, -base, base + np.array([0, 0, 0, 3.0, 0]), base], 1)
    mask = np.ones_like(returns, dtype=bool)
    mask[:, 4] = [True, True, False, False, False]  # only 2 days: below min_overlap
    returns[2:, 4] = np.nan
    graph = correlation_topk_graph(returns, mask, k=1, min_overlap=3)
    # Stock 0: |rho| = 1 with stocks 1 and 2; the tie keeps the lower index.
    rho03 = np.corrcoef(base, returns[:, 3])[0, 1]
    assert _edges(graph) == {
        (0, 1): 1.0,
        (1, 0): 1.0,
        (2, 0): 1.0,
        (3, 0): round(rho03, 6),
    }
    signed = correlation_topk_graph(returns, mask, k=2, min_overlap=3, signed=True)
    assert _edges(signed)[(0, 2)] == -1.0
    assert not any(4 in pair for pair in _edges(signed))


def test_correlation_topk_uses_only_days_both_observed() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    b = a.copy()
    b[20:] = rng.normal(size=20)  # unrelated on the days stock 0 is missing
    c = rng.normal(size=40)
    returns = np.stack([a, b, c], 1)
    mask = np.ones((40, 3), dtype=bool)
    mask[20:, 0] = False
    graph = correlation_topk_graph(returns, mask, k=1)
    assert _edges(graph)[(0, 1)] == 1.0
    with pytest.raises(InputError, match="k must be"):
        correlation_topk_graph(returns, mask, k=3)


def test_sector_clique_and_bipartite() -> None:
    tickers = ["A", "B", "C", "D"]
    sectors = {"A": "tech", "B": "bank", "C": "tech", "D": "tech", "Z": "bank"}
    clique, names = sector_graph(tickers, sectors)
    assert names == ["bank", "tech"]
    expected = np.zeros((4, 4))
    for i in (0, 2, 3):
        for j in (0, 2, 3):
            expected[i, j] = float(i != j)
    np.testing.assert_array_equal(clique.to_dense().numpy(), expected)
    bip, _ = sector_graph(tickers, sectors, mode="bipartite")
    assert bip.num_nodes == 6
    assert sorted(_edges(bip)) == sorted(
        [(0, 5), (5, 0), (1, 4), (4, 1), (2, 5), (5, 2), (3, 5), (5, 3)]
    )
    with pytest.raises(InputError, match="no sector"):
        sector_graph([*tickers, "E"], sectors)
    alone, _ = sector_graph([*tickers, "E"], sectors, unknown="isolate")
    assert alone.num_nodes == 5 and not (alone.edge_index == 4).any()


def _path() -> Graph:
    return Graph(torch.tensor([[0, 1], [1, 2]]), torch.ones(2), 3)  # symmetrised inside


def test_netmf_matrix_by_hand() -> None:
    # Path 0-1-2: degrees (1, 2, 1), vol 4. T = 1: 4 * D^-1 A D^-1.
    np.testing.assert_allclose(
        netmf_matrix(_path(), window=1), [[0, 2, 0], [2, 0, 2], [0, 2, 0]], atol=1e-12
    )
    # T = 2: (P + P^2) D^-1 is all 1/2, times vol / T = 2.
    np.testing.assert_allclose(netmf_matrix(_path(), window=2), np.ones((3, 3)), atol=1e-12)
    # b = 2 halves it.
    np.testing.assert_allclose(
        netmf_matrix(_path(), window=2, negative=2.0), np.full((3, 3), 0.5), atol=1e-12
    )


def test_netmf_embedding_by_hand() -> None:
    # log(max(M, 1)) = log 2 * path adjacency: eigenvalues +-sqrt(2) log 2 and 0.
    emb = netmf_embedding(_path(), dim=2, window=1).double()
    gram = emb @ emb.T
    expected = np.sqrt(2) * np.log(2) * np.array([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])
    np.testing.assert_allclose(gram.numpy(), expected, atol=1e-6)
    assert (emb.abs().amax(0) == emb.amax(0)).all()  # sign convention


def test_netmf_embedding_separates_communities() -> None:
    blocks = np.kron(np.eye(2), np.ones((4, 4))) - np.eye(8)
    blocks[3, 4] = blocks[4, 3] = 1.0  # one bridge
    graph = Graph.from_dense(blocks)
    emb = netmf_embedding(graph, dim=2, window=3)
    unit = torch.nn.functional.normalize(emb, dim=1)
    cos = unit @ unit.T
    assert cos[0, 1] > cos[0, 6] + 0.5
    assert torch.equal(emb, netmf_embedding(graph, dim=2, window=3))  # deterministic


def test_netmf_refuses_negative_weights_and_bad_dim() -> None:
    graph = Graph(torch.tensor([[0], [1]]), torch.tensor([-0.5]), 2)
    with pytest.raises(InputError, match="negative"):
        netmf_embedding(graph, dim=1)
    with pytest.raises(InputError, match="dim"):
        netmf_embedding(_path(), dim=4)


def test_isolated_node_embeds_at_zero() -> None:
    graph = Graph(torch.tensor([[0, 1], [1, 2]]), torch.ones(2), 4)
    emb = netmf_embedding(graph, dim=2, window=1)
    assert emb[3].abs().max() == 0
