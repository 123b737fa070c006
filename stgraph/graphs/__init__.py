"""Graphs: the `Graph` type, builders from raw inputs, normalisations and dataset recipes."""

from stgraph.graphs.builders import (
    from_adjacency,
    from_edge_list,
    gaussian_kernel,
    knn_graph,
    stgcn_kernel,
    to_distance_matrix,
)
from stgraph.graphs.graph import Graph
from stgraph.graphs.normalize import (
    chebyshev_basis,
    laplacian_eigenvectors,
    random_walk_norm,
    scaled_laplacian,
    symmetric_norm,
)
from stgraph.graphs.recipes import GRAPH_RECIPES, build_graph, masked_correlation

__all__ = [
    "GRAPH_RECIPES",
    "Graph",
    "build_graph",
    "chebyshev_basis",
    "from_adjacency",
    "from_edge_list",
    "gaussian_kernel",
    "knn_graph",
    "laplacian_eigenvectors",
    "masked_correlation",
    "random_walk_norm",
    "scaled_laplacian",
    "stgcn_kernel",
    "symmetric_norm",
    "to_distance_matrix",
]
