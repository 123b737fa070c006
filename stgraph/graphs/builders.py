"""Builders: turn distances, adjacency matrices, coordinates or edge lists into a `Graph`.

Every function here is pure (no I/O) and returns a `Graph` whose dense form ``A[i, j]`` is the
weight of edge i -> j. Bad input raises `InputError` with a message that says what to fix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree
from torch_geometric.utils import coalesce, to_undirected

from stgraph.data.edges import parse_edge_list
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph

EARTH_RADIUS_KM = 6371.0088


def _as_square(matrix: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """``matrix`` as a float64 numpy array, checked to be square and free of NaN."""
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{what} must be a square [N, N] matrix, got shape {arr.shape}.")
    if np.isnan(arr).any():
        first = tuple(int(i) for i in np.argwhere(np.isnan(arr))[0])
        raise InputError(f"{what} holds NaN (first at {first}); use inf to mark 'no edge'.")
    return arr


def _check_distances(dist: np.ndarray, what: str) -> None:
    if (dist < 0).any():
        first = tuple(int(i) for i in np.argwhere(dist < 0)[0])
        raise InputError(f"{what} holds negative entries (first at {first}); distances are >= 0.")


def gaussian_kernel(
    distances: np.ndarray | torch.Tensor,
    sigma: float | None = None,
    threshold: float = 0.1,
    self_loops: bool = True,
) -> Graph:
    """The thresholded Gaussian kernel of DCRNN (Li et al., 2018).

    ``w_ij = exp(-(d_ij / sigma)^2)``, set to 0 where ``w_ij < threshold``. An ``inf`` distance
    means no road, hence no edge.

    Args:
        distances: ``[N, N]`` non-negative distances, ``inf`` where two nodes are not linked.
        sigma: kernel width; defaults to the (population) std of the finite distances, as DCRNN.
        threshold: weights strictly below this become 0 (DCRNN's ``normalized_k``).
        self_loops: keep the diagonal as the kernel gives it (``d_ii = 0`` -> weight 1, as in
            DCRNN's ``adj_mx.pkl``). False drops every self loop.

    Returns:
        The weighted graph, edge i -> j wherever ``w_ij > 0``.

    Raises:
        InputError: the matrix is not square, holds NaN or negative values, or sigma is unusable.
    """
    dist = _as_square(distances, "distances")
    _check_distances(dist, "distances")
    finite = dist[np.isfinite(dist)]
    if sigma is None:
        if finite.size == 0:
            raise InputError("distances has no finite entry: every pair is unlinked.")
        sigma = float(finite.std())
    if not np.isfinite(sigma) or sigma <= 0:
        raise InputError(
            f"gaussian_kernel needs sigma > 0, got {sigma} (all finite distances are equal?); "
            "pass sigma explicitly."
        )
    weights = np.exp(-np.square(dist / sigma))
    weights[weights < threshold] = 0.0
    if not self_loops:
        np.fill_diagonal(weights, 0.0)
    return Graph.from_dense(weights.astype(np.float32))


def stgcn_kernel(
    distances: np.ndarray | torch.Tensor,
    scale: float = 1e4,
    sigma2: float = 0.1,
    epsilon: float = 0.5,
) -> Graph:
    """The Gaussian kernel of STGCN (Yu et al., 2018), also used by STTN.

    ``w_ij = exp(-(d_ij / scale)^2 / sigma2)`` kept where ``w_ij >= epsilon``, zero diagonal. A
    matrix whose entries are exactly the set {0, 1} is taken as a ready adjacency and used as is,
    as STGCN's ``weight_matrix`` does.

    Args:
        distances: ``[N, N]`` non-negative distances (metres for PeMSD7), ``inf`` for no link.
        scale: distances are divided by this first (STGCN: 10000).
        sigma2: the kernel's variance on the scaled distances.
        epsilon: weights below this become 0.

    Returns:
        The weighted graph without self loops (unless a 0/1 matrix holds them).

    Raises:
        InputError: the matrix is not square, holds NaN or negative values, or a parameter is <= 0.
    """
    dist = _as_square(distances, "distances")
    _check_distances(dist, "distances")
    if set(np.unique(dist).tolist()) == {0.0, 1.0}:
        return Graph.from_dense(dist.astype(np.float32))
    if scale <= 0 or sigma2 <= 0:
        raise InputError(f"stgcn_kernel needs scale > 0 and sigma2 > 0, got {scale}, {sigma2}.")
    weights = np.exp(-np.square(dist / scale) / sigma2)
    weights[weights < epsilon] = 0.0
    np.fill_diagonal(weights, 0.0)
    return Graph.from_dense(weights.astype(np.float32))


def _gaussian_knn(
    src: np.ndarray, dst: np.ndarray, dist: np.ndarray, num_nodes: int, symmetric: bool
) -> Graph:
    """Edges ``src -> dst`` weighted ``exp(-(d / sigma)^2)``, sigma = std of ``dist``."""
    sigma = float(dist.std()) if dist.size else 0.0
    # All neighbours equally far (a regular grid): no scale to measure by, so weigh them equally.
    weights = np.exp(-np.square(dist / sigma)) if sigma > 0 else np.ones_like(dist)
    edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    edge_weight = torch.as_tensor(weights, dtype=torch.float32)
    if symmetric:
        edge_index, edge_weight = to_undirected(edge_index, edge_weight, num_nodes, reduce="max")
    else:
        edge_index, edge_weight = coalesce(edge_index, edge_weight, num_nodes)
    # Far neighbours can underflow to 0 in float32; drop them so from_dense(to_dense()) round-trips.
    keep = edge_weight > 0
    return Graph(edge_index[:, keep], edge_weight[keep], num_nodes)


def knn_graph(
    points: np.ndarray | torch.Tensor,
    k: int,
    metric: Literal["euclidean", "haversine"] = "euclidean",
    symmetric: bool = False,
) -> Graph:
    """Link every node to its ``k`` nearest other nodes, with Gaussian weights.

    Edges point from a node to its neighbours (row i of the dense matrix holds i's k neighbours).
    The weight is ``exp(-(d / sigma)^2)`` with sigma the std of all the kNN distances; if those are
    all equal, every weight is 1.

    Args:
        points: ``[N, D]`` features, or ``[N, 2]`` (latitude, longitude) in degrees for haversine.
        k: neighbours per node, ``1 <= k < N``.
        metric: ``"euclidean"`` or ``"haversine"`` (great-circle distance in km).
        symmetric: also add j -> i for every i -> j (union of both kNN relations).

    Returns:
        The kNN graph.

    Raises:
        InputError: bad shape, non-finite points, out-of-range latitudes, or bad ``k``/``metric``.
    """
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise InputError(f"knn_graph needs [N, D] points, got shape {pts.shape}.")
    if not np.isfinite(pts).all():
        raise InputError("knn_graph: points hold NaN or inf (a node without coordinates?).")
    n = pts.shape[0]
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise InputError(f"knn_graph: k must be an integer in [1, {n - 1}] for {n} nodes, got {k}.")
    if metric == "haversine":
        if pts.shape[1] != 2:
            raise InputError(f"haversine needs [N, 2] (lat, lon) points, got shape {pts.shape}.")
        if (np.abs(pts[:, 0]) > 90).any():
            raise InputError("haversine: latitudes beyond +-90; are the columns (lat, lon)?")
        lat, lon = np.radians(pts[:, 0]), np.radians(pts[:, 1])
        # Chord length on the unit sphere orders pairs exactly as great-circle distance does.
        space = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
    elif metric == "euclidean":
        space = pts
    else:
        raise InputError(f"knn_graph: unknown metric '{metric}'; use 'euclidean' or 'haversine'.")
    found, idx = cKDTree(space).query(space, k=k + 1)
    # Drop each node itself; with duplicate points it may not come first, so remove it by index.
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    src = np.repeat(np.arange(n), k)
    dst = idx[keep]
    dist = found[keep]
    if metric == "haversine":
        dist = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(dist / 2.0, 0.0, 1.0))
    return _gaussian_knn(src, dst, dist, n, symmetric)


def from_adjacency(adj: np.ndarray | torch.Tensor, what: str = "adjacency") -> Graph:
    """A graph with an edge i -> j wherever ``adj[i, j] != 0``, weighted by that entry.

    Args:
        adj: ``[N, N]`` finite, non-negative weights.
        what: how to name the matrix in error messages (e.g. the file it came from).

    Raises:
        InputError: the matrix is not square, or holds NaN, inf or negative entries.
    """
    arr = _as_square(adj, what)
    if not np.isfinite(arr).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(f"{what} holds inf (first at {first}); an adjacency must be finite.")
    if (arr < 0).any():
        first = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise InputError(f"{what} holds negative weights (first at {first}); weights must be >= 0.")
    return Graph.from_dense(arr.astype(np.float32))


def from_edge_list(
    edges: pd.DataFrame | np.ndarray,
    node_ids: list | tuple | np.ndarray,
    duplicates: Literal["first", "last", "min", "max", "mean", "error"] = "first",
    symmetric: bool = False,
    unknown: Literal["error", "drop"] = "error",
    what: str = "edge list",
) -> Graph:
    """A `Graph` of the edges `stgraph.data.edges.parse_edge_list` reads from rows
    ``(from, to[, weight])`` whose ends are node ids: the same arguments and the same errors."""
    src, dst, weight = parse_edge_list(
        edges, node_ids, duplicates=duplicates, symmetric=symmetric, unknown=unknown, what=what
    )
    edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    return Graph(edge_index, torch.as_tensor(weight, dtype=torch.float32), len(node_ids))


def to_distance_matrix(graph: Graph, fill: float = np.inf) -> np.ndarray:
    """The ``[N, N]`` float64 matrix of edge weights with ``fill`` where there is no edge.

    Unlike ``Graph.to_dense`` (0 for no edge) this keeps a zero-weight edge apart from a missing
    one, which a distance matrix needs: ``gaussian_kernel(to_distance_matrix(from_edge_list(...)))``
    rebuilds DCRNN's ``adj_mx.pkl`` from its distance file.
    """
    out = np.full((graph.num_nodes, graph.num_nodes), fill, dtype=np.float64)
    src, dst = graph.edge_index.numpy()
    out[src, dst] = graph.edge_weight.double().numpy()
    return out
