"""Normalisations of a `Graph`: GCN and random-walk operators, scaled Laplacian, Chebyshev basis
and Laplacian eigenvector positional encodings.

All work on the sparse ``edge_index`` form (via ``torch_geometric.utils``) and return a new `Graph`
(or dense tensors where the caller needs them dense). Degrees are weighted out-degrees (row sums
of the dense matrix, ``A[i, j]`` = weight of i -> j), as in the DCRNN and STGCN reference code.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import (
    add_remaining_self_loops,
    coalesce,
    get_laplacian,
    scatter,
    to_scipy_sparse_matrix,
    to_undirected,
)

from stgraph.errors import InputError
from stgraph.graphs.graph import Graph

# Above this many nodes eigen-decompositions go through ARPACK instead of a dense solver.
_DENSE_EIG_MAX = 2000


def _weights(graph: Graph) -> torch.Tensor:
    return graph.edge_weight.to(torch.float64)


def _with_weights(graph: Graph, edge_index: torch.Tensor, weight: torch.Tensor) -> Graph:
    keep = weight != 0
    return Graph(edge_index[:, keep], weight[keep].to(torch.float32), graph.num_nodes)


def symmetric_norm(graph: Graph, add_self_loops: bool = True) -> Graph:
    """The GCN operator ``D^-1/2 (A + I) D^-1/2`` (Kipf & Welling), D the degrees of ``A + I``.

    As in PyG's ``GCNConv``, self loops of weight 1 are added only to nodes that lack one; an
    existing self loop keeps its weight (so DCRNN's matrices, which carry a diagonal of 1, are not
    given a diagonal of 2). Nodes of degree 0 get all-zero rows.

    Args:
        graph: the graph.
        add_self_loops: add the identity first (False gives ``D^-1/2 A D^-1/2``).
    """
    # flow="target_to_source" makes gcn_norm take degrees over rows (out-degree).
    edge_index, weight = gcn_norm(
        graph.edge_index,
        _weights(graph),
        graph.num_nodes,
        add_self_loops=add_self_loops,
        flow="target_to_source",
    )
    return _with_weights(graph, edge_index, weight)


def random_walk_norm(graph: Graph, add_self_loops: bool = False) -> Graph:
    """The random-walk operator ``D^-1 A``: each row divided by its out-degree (DCRNN).

    Args:
        graph: the graph.
        add_self_loops: give nodes without a self loop one of weight 1 first.
    """
    edge_index, weight = graph.edge_index, _weights(graph)
    if add_self_loops:
        edge_index, weight = add_remaining_self_loops(edge_index, weight, 1.0, graph.num_nodes)
    deg = scatter(weight, edge_index[0], dim=0, dim_size=graph.num_nodes, reduce="sum")
    inv = deg.reciprocal().masked_fill(deg == 0, 0.0)
    return _with_weights(graph, edge_index, weight * inv[edge_index[0]])


def _symmetrised(graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """``max(A, A^T)`` in sparse form, as DCRNN symmetrises before its Laplacian."""
    return to_undirected(graph.edge_index, _weights(graph), graph.num_nodes, reduce="max")


def _largest_eigenvalue(edge_index: torch.Tensor, weight: torch.Tensor, n: int) -> float:
    matrix = to_scipy_sparse_matrix(edge_index, weight, n).tocsr()
    if n <= 2:
        return float(np.linalg.eigvalsh(matrix.toarray())[-1])
    # A fixed random start vector: deterministic, and never orthogonal to the top eigenvector
    # by construction (a constant vector can be, e.g. on bipartite graphs).
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, n)
    return float(eigsh(matrix, k=1, which="LA", v0=v0, return_eigenvectors=False)[0])


def scaled_laplacian(graph: Graph, lambda_max: float | None = None) -> Graph:
    """``L~ = 2 L / lambda_max - I`` with ``L = I - D^-1/2 A D^-1/2`` of ``max(A, A^T)``.

    This is the Chebyshev-ready Laplacian of DCRNN and STGCN: with the true largest eigenvalue its
    spectrum lies in [-1, 1]. Self loops stay in ``A`` (they count in D), as in DCRNN's
    ``calculate_scaled_laplacian``.

    Args:
        graph: the graph (directed graphs are symmetrised first).
        lambda_max: the largest eigenvalue of L; computed with ARPACK when None. STGCN and
            DCRNN sometimes fix it to 2, its upper bound.

    Raises:
        InputError: ``lambda_max`` is not positive.
    """
    n = graph.num_nodes
    edge_index, weight = _symmetrised(graph)
    edge_index, weight = gcn_norm(edge_index, weight, n, add_self_loops=False)
    loops = torch.arange(n).repeat(2, 1)
    lap_index = torch.cat([loops, edge_index], dim=1)
    lap_weight = torch.cat([torch.ones(n, dtype=torch.float64), -weight])
    lap_index, lap_weight = coalesce(lap_index, lap_weight, n, reduce="sum")
    if lambda_max is None:
        lambda_max = _largest_eigenvalue(lap_index, lap_weight, n)
    if not lambda_max > 0:
        raise InputError(f"scaled_laplacian: lambda_max must be > 0, got {lambda_max}.")
    out_index = torch.cat([lap_index, loops], dim=1)
    out_weight = torch.cat([2.0 * lap_weight / lambda_max, -torch.ones(n, dtype=torch.float64)])
    out_index, out_weight = coalesce(out_index, out_weight, n, reduce="sum")
    return _with_weights(graph, out_index, out_weight)


def chebyshev_basis(
    graph: Graph, order: int, lambda_max: float | None = None
) -> list[torch.Tensor]:
    """The first ``order`` Chebyshev polynomials of the scaled Laplacian, as dense matrices.

    ``T_0 = I``, ``T_1 = L~``, ``T_k = 2 L~ T_{k-1} - T_{k-2}`` (STGCN's ``cheb_poly_approx``
    with ``Ks = order``).

    Args:
        graph: the graph; its scaled Laplacian is computed with `scaled_laplacian`.
        order: how many terms (>= 1).
        lambda_max: passed to `scaled_laplacian`.

    Returns:
        ``order`` float32 tensors of shape ``[N, N]``.
    """
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise InputError(f"chebyshev_basis: order must be an integer >= 1, got {order}.")
    n = graph.num_nodes
    lap = scaled_laplacian(graph, lambda_max)
    # Sparse L~ times dense T_{k-1}; float64 so high orders do not drift.
    lap_sparse = torch.sparse_coo_tensor(
        lap.edge_index, lap.edge_weight.double(), (n, n), check_invariants=True
    ).coalesce()
    terms = [torch.eye(n, dtype=torch.float64)]
    if order > 1:
        terms.append(lap.to_dense().double())
    for _ in range(2, order):
        terms.append(2.0 * torch.sparse.mm(lap_sparse, terms[-1]) - terms[-2])
    return [term.float() for term in terms]


def laplacian_eigenvectors(graph: Graph, k: int, tol: float = 1e-6) -> torch.Tensor:
    """Eigenvectors of the normalised Laplacian for its ``k`` smallest non-trivial eigenvalues.

    The Laplacian is PyG's ``I - D^-1/2 A D^-1/2`` of ``max(A, A^T)`` without self loops. The
    trivial eigenvalues are the zeros (one per connected component of two or more nodes), whose
    eigenvectors only say which component a node is in. Each vector's sign is fixed so that its
    largest-magnitude entry is positive. Used as spatial positional encodings (STTN).

    Args:
        graph: the graph.
        k: how many eigenvectors.
        tol: eigenvalues at or below this count as zero.

    Returns:
        ``[N, k]`` float32, columns in increasing eigenvalue order. Where an eigenvalue is
        repeated its eigenvectors are only defined up to a rotation.

    Raises:
        InputError: ``k`` is not positive, or the graph has fewer than ``k`` non-trivial
            eigenvalues.
    """
    n = graph.num_nodes
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"laplacian_eigenvectors: k must be an integer >= 1, got {k}.")
    edge_index, weight = _symmetrised(graph)
    lap_index, lap_weight = get_laplacian(edge_index, weight, "sym", num_nodes=n)
    lap = to_scipy_sparse_matrix(lap_index, lap_weight, n).tocsr()
    components = sp.csgraph.connected_components(lap, directed=False)[1]
    num_trivial = int((np.bincount(components) > 1).sum())
    if k > n - num_trivial:
        raise InputError(
            f"laplacian_eigenvectors: asked for k={k}, but a graph of {n} nodes with "
            f"{num_trivial} non-trivial connected component(s) has only "
            f"{n - num_trivial} non-trivial eigenvalue(s)."
        )
    if n <= _DENSE_EIG_MAX:
        values, vectors = np.linalg.eigh(lap.toarray())
    else:
        v0 = np.random.default_rng(0).uniform(0.5, 1.5, n)
        values, vectors = eigsh(lap, k=k + num_trivial, which="SA", v0=v0)
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    vectors = vectors[:, values > tol][:, :k]
    if vectors.shape[1] < k:
        raise InputError(f"laplacian_eigenvectors: only {vectors.shape[1]} non-trivial found.")
    # The first entry within rounding of the largest magnitude: exact ties (symmetric graphs)
    # must not be broken by float noise.
    size = np.abs(vectors)
    peak = (size >= size.max(axis=0) - 1e-9).argmax(axis=0)
    vectors = vectors * np.sign(vectors[peak, np.arange(k)])
    return torch.as_tensor(vectors, dtype=torch.float32)
