"""Graphs: the `Graph` type, builders from raw inputs, normalisations and dataset recipes; the
mobility (`mobility`) and stock (`stocks`) builders.

The names below are imported on first use (PEP 562): the builders and normalisations pull in
torch_geometric and scipy (about 1.5 s), which loading a trained model to forecast never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "from_adjacency": "builders",
    "from_edge_list": "builders",
    "gaussian_kernel": "builders",
    "knn_graph": "builders",
    "stgcn_kernel": "builders",
    "to_distance_matrix": "builders",
    "Graph": "graph",
    "chebyshev_basis": "normalize",
    "laplacian_eigenvectors": "normalize",
    "random_walk_norm": "normalize",
    "scaled_laplacian": "normalize",
    "symmetric_norm": "normalize",
    "GRAPH_RECIPES": "recipes",
    "build_graph": "recipes",
    "masked_correlation": "recipes",
    "cooccurrence_graph": "mobility",
    "membership_graph": "mobility",
    "radius_graph": "mobility",
    "correlation_topk_graph": "stocks",
    "netmf_embedding": "stocks",
    "sector_graph": "stocks",
}

__all__ = [
    "GRAPH_RECIPES",
    "Graph",
    "build_graph",
    "chebyshev_basis",
    "cooccurrence_graph",
    "correlation_topk_graph",
    "from_adjacency",
    "from_edge_list",
    "gaussian_kernel",
    "knn_graph",
    "laplacian_eigenvectors",
    "masked_correlation",
    "membership_graph",
    "netmf_embedding",
    "radius_graph",
    "random_walk_norm",
    "scaled_laplacian",
    "sector_graph",
    "stgcn_kernel",
    "symmetric_norm",
    "to_distance_matrix",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from stgraph.graphs.builders import (
        from_adjacency,
        from_edge_list,
        gaussian_kernel,
        knn_graph,
        stgcn_kernel,
        to_distance_matrix,
    )
    from stgraph.graphs.graph import Graph
    from stgraph.graphs.mobility import cooccurrence_graph, membership_graph, radius_graph
    from stgraph.graphs.normalize import (
        chebyshev_basis,
        laplacian_eigenvectors,
        random_walk_norm,
        scaled_laplacian,
        symmetric_norm,
    )
    from stgraph.graphs.recipes import GRAPH_RECIPES, build_graph, masked_correlation
    from stgraph.graphs.stocks import correlation_topk_graph, netmf_embedding, sector_graph
