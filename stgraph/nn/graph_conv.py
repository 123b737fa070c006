"""Graph convolutions on a fixed graph and a gated fusion of two branches.

`ChebConv` is the Chebyshev spectral convolution of Defferrard et al. (2016), as used by STGCN and
STTN: ``Y = sum_k T_k(L~) X Theta_k`` with ``T_0 = I``, ``T_1 = L~``,
``T_k = 2 L~ T_{k-1} - T_{k-2}`` applied to X by recursion (never forming ``T_k`` itself).
All ``B * T`` graph signals of a ``[B, T, N, C]`` input go through one ``[N, N] @ [N, B*T*C]``
product per order, sparse or dense.

`GatedFusion` is STTN's gate between the attention branch and the fixed-graph branch:
``g = sigmoid(W_s Y_s + W_g Y_g + b)``, ``Y = g * Y_s + (1 - g) * Y_g``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from stgraph.graphs.graph import Graph

# Up to this many nodes a dense operator is used: a batched dense GEMM in the input's layout
# beats sparse products (which need nodes-first transposes) on CPU at a few hundred nodes; above
# it the sparse operator is used when its density (nnz / N^2) is below _SPARSE_DENSITY.
_DENSE_MAX_NODES = 1024
_SPARSE_DENSITY = 0.1


class ChebConv(nn.Module):
    """Chebyshev graph convolution of order ``order`` on a fixed operator, along axis ``-2``.

    Args:
        in_channels, out_channels: channel widths.
        operator: the scaled Laplacian ``L~`` as a `Graph` (e.g.
            `stgraph.graphs.normalize.scaled_laplacian`) or an ``[N, N]`` tensor. Stored as a
            non-persistent buffer: it is rebuilt from the graph, not saved with the weights.
        order: K, the number of Chebyshev terms (K = 1 is a per-node linear layer).
        bias: learn an output bias.
        sparse: keep the operator sparse (True), dense (False) or decide by size and density
            (None).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        operator: Graph | torch.Tensor,
        order: int = 3,
        bias: bool = True,
        sparse: bool | None = None,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if isinstance(operator, Graph):
            n = operator.num_nodes
            matrix = torch.sparse_coo_tensor(
                operator.edge_index, operator.edge_weight.float(), (n, n), check_invariants=True
            ).coalesce()
        else:
            matrix = operator.float()
            n = matrix.shape[0]
        nnz = matrix._nnz() if matrix.is_sparse else int((matrix != 0).sum())
        if sparse is None:
            sparse = n > _DENSE_MAX_NODES and nnz < _SPARSE_DENSITY * n * n
        matrix = matrix.coalesce() if matrix.is_sparse else matrix
        if sparse:
            with warnings.catch_warnings():
                # CSR is marked beta, but CSR @ dense (and its gradient) is what we use.
                warnings.simplefilter("ignore", UserWarning)
                matrix = (matrix if matrix.is_sparse else matrix.to_sparse()).to_sparse_csr()
        else:
            matrix = matrix.to_dense()
        self.register_buffer("operator", matrix, persistent=False)
        self.num_nodes = n
        self.order = order
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(order * in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    @property
    def is_sparse(self) -> bool:
        return self.operator.layout != torch.strided

    def _apply_operator(self, z: torch.Tensor) -> torch.Tensor:
        if self.is_sparse:
            return self.operator @ z
        return torch.mm(self.operator, z)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """The Chebyshev terms of ``x [..., N, C]``: ``[..., N, K*C]``, term-major
        (channels ``k*C .. k*C+C-1`` hold ``T_k(L~) x``), so ``basis(x) @ weight`` is the conv."""
        *lead, n, c = x.shape
        if n != self.num_nodes:
            raise ValueError(f"expected {self.num_nodes} nodes, got {n}")
        # Nodes first: every signal of the batch shares one matrix product per order.
        z0 = x.reshape(-1, n, c).transpose(0, 1).reshape(n, -1)
        terms = [z0]
        if self.order > 1:
            terms.append(self._apply_operator(z0))
        for _ in range(2, self.order):
            terms.append(2.0 * self._apply_operator(terms[-1]) - terms[-2])
        # [K, N, M, C] -> [M, N, K, C].
        stacked = torch.stack(terms).view(self.order, n, -1, c).permute(2, 1, 0, 3)
        return stacked.reshape(*lead, n, self.order * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., N, C_in]`` -> ``[..., N, C_out]``."""
        if self.is_sparse:
            # One GEMM applies all Theta_k at once.
            out = self.basis(x) @ self.weight
        else:
            # Dense operator: L @ [M, N, C] is one batched GEMM in the input's own layout, and
            # summing T_k x @ Theta_k avoids the transposes and the concatenation of `basis`.
            *lead, n, c = x.shape
            z0 = x.reshape(-1, n, c)
            theta = self.weight.view(self.order, c, -1)
            out = z0 @ theta[0]
            z_prev, z = z0, None
            if self.order > 1:
                z = torch.matmul(self.operator, z0)
                out = out + z @ theta[1]
            for k in range(2, self.order):
                z_prev, z = z, 2.0 * torch.matmul(self.operator, z) - z_prev
                out = out + z @ theta[k]
            out = out.view(*lead, n, -1)
        if self.bias is not None:
            out = out + self.bias
        return out


class GatedFusion(nn.Module):
    """STTN's learned gate between two branches of the same width.

    ``g = sigmoid(W_s Y_s + W_g Y_g + b)`` (per element), ``Y = g * Y_s + (1 - g) * Y_g``.

    Args:
        dim: channels of both branches.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_s = nn.Linear(dim, dim, bias=True)
        self.proj_g = nn.Linear(dim, dim, bias=False)

    def forward(self, y_s: torch.Tensor, y_g: torch.Tensor) -> torch.Tensor:
        """Both ``[..., dim]``; returns the gated mix, same shape."""
        gate = torch.sigmoid(self.proj_s(y_s) + self.proj_g(y_g))
        # y_g + g * (y_s - y_g) is the same mix with one fewer full-size product.
        return torch.lerp(y_g, y_s, gate)
