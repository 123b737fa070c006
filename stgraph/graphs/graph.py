"""`Graph`: a static weighted graph in PyG layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Graph:
    """A weighted directed graph over ``num_nodes`` nodes.

    Attributes:
        edge_index: ``[2, E]`` long, row 0 = source, row 1 = target (PyG convention).
        edge_weight: ``[E]`` float32.
        num_nodes: N.
    """

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    num_nodes: int

    def __post_init__(self) -> None:
        if self.edge_index.dim() != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, E], got {tuple(self.edge_index.shape)}")
        if self.edge_weight.shape != (self.edge_index.shape[1],):
            raise ValueError("edge_weight must have one entry per edge")
        if self.edge_index.numel() and int(self.edge_index.max()) >= self.num_nodes:
            raise ValueError("edge_index refers to a node >= num_nodes")

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    @classmethod
    def from_dense(cls, adj: np.ndarray | torch.Tensor) -> Graph:
        """Edges where ``adj[i, j] != 0``, oriented i -> j."""
        adj = torch.as_tensor(adj, dtype=torch.float32)
        if adj.dim() != 2 or adj.shape[0] != adj.shape[1]:
            raise ValueError(f"adjacency must be square, got {tuple(adj.shape)}")
        src, dst = torch.nonzero(adj, as_tuple=True)
        return cls(torch.stack([src, dst]), adj[src, dst], adj.shape[0])

    def to_dense(self) -> torch.Tensor:
        """The ``[N, N]`` weighted adjacency, ``A[i, j]`` = weight of edge i -> j."""
        adj = torch.zeros(self.num_nodes, self.num_nodes, dtype=self.edge_weight.dtype)
        adj[self.edge_index[0], self.edge_index[1]] = self.edge_weight
        return adj
