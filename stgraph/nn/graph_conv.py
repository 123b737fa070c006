"""Graph convolutions on a fixed graph and a gated fusion of two branches.

`ChebConv` is the Chebyshev spectral convolution of Defferrard et al. (2016), as used by STGCN and
STTN: ``Y = sum_k T_k(L~) X Theta_k`` with ``T_0 = I``, ``T_1 = L~``,
``T_k = 2 L~ T_{k-1} - T_{k-2}`` applied to X by recursion (never forming ``T_k`` itself).

The recursion runs in the input's own ``[B, T, N, C]`` layout, with no nodes-first transposes:

- a dense operator is one batched GEMM ``L~ @ X[m]`` over all ``M = B * T`` graph signals;
- a sparse operator (road graphs are sparse: los-loop's 207 x 207 adjacency has 2,833
  non-zeros, 6.6 %) is applied as one CSR product of the block-diagonal ``I_M (x) L~`` with the
  input viewed as ``[M * N, C]``. Its cost is ``2 nnz C`` per signal instead of ``2 N^2 C``.

`GatedFusion` is STTN's gate between the attention branch and the fixed-graph branch:
``g = sigmoid(W_s Y_s + W_g Y_g + b)``, ``Y = g * Y_s + (1 - g) * Y_g``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from stgraph.graphs.graph import Graph

# The sparse operator is used when its density (nnz / N^2) is below this. Measured on 2 CPU
# threads at N = 207 (6.6 % dense) with 8-window micro-batches, forward + backward of a K = 3,
# 64-channel conv: sparse block-diagonal 11 ms, dense batched GEMM 22 ms.
_SPARSE_DENSITY = 0.2
# At most this many non-zeros in one block-diagonal operator; larger batches go in chunks.
_BLOCK_NNZ = 1 << 23


def _csr(matrix: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        # CSR is marked beta, but CSR @ dense is all that is used.
        warnings.simplefilter("ignore", UserWarning)
        return matrix.to_sparse_csr()


class _BlockDiagonal:
    """``I_M (x) A`` for a sparse ``A [N, N]`` as CSR, built once per ``M`` and cached."""

    def __init__(self, matrix: torch.Tensor) -> None:
        coo = matrix.coalesce()
        self.n = matrix.shape[0]
        self.rows, self.cols = coo.indices()
        self.values = coo.values()
        self.cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, m: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (m, device, dtype)
        if key not in self.cache:
            if len(self.cache) > 8:
                self.cache.clear()
            offset = (torch.arange(m) * self.n)[:, None]
            rows = (self.rows[None] + offset).reshape(-1)
            cols = (self.cols[None] + offset).reshape(-1)
            values = self.values.repeat(m)
            size = (m * self.n, m * self.n)
            coo = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), values, size, check_invariants=False
            )
            self.cache[key] = _csr(coo.coalesce().to(device=device, dtype=dtype))
        return self.cache[key]


class _SparseProduct(torch.autograd.Function):
    """``A @ z`` for a constant sparse ``A``; the backward is ``A^T @ grad``."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor):
        ctx.transposed = transposed
        return matrix @ z

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.transposed @ grad.contiguous(), None, None


class ChebConv(nn.Module):
    """Chebyshev graph convolution of order ``order`` on a fixed operator, along axis ``-2``.

    Args:
        in_channels, out_channels: channel widths.
        operator: the scaled Laplacian ``L~`` as a `Graph` (e.g.
            `stgraph.graphs.normalize.scaled_laplacian`) or an ``[N, N]`` tensor. Kept as a
            non-persistent buffer: it is rebuilt from the graph, not saved with the weights.
        order: K, the number of Chebyshev terms (K = 1 is a per-node linear layer).
        bias: learn an output bias.
        sparse: apply the operator as a sparse (True) or dense (False) product, or decide by
            density (None: sparse below 20 % non-zeros).
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
            sparse = nnz < _SPARSE_DENSITY * n * n
        self.register_buffer("operator", matrix.to_dense(), persistent=False)
        self._blocks: tuple[_BlockDiagonal, _BlockDiagonal] | None = None
        if sparse:
            coo = matrix.coalesce() if matrix.is_sparse else matrix.to_sparse()
            transposed = coo.t().coalesce()
            symmetric = torch.equal(coo.indices(), transposed.indices()) and torch.equal(
                coo.values(), transposed.values()
            )
            forward = _BlockDiagonal(coo)
            self._blocks = (forward, forward if symmetric else _BlockDiagonal(transposed))
        self.num_nodes = n
        self.order = order
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(order * in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    @property
    def is_sparse(self) -> bool:
        return self._blocks is not None

    def _apply_operator(self, z: torch.Tensor) -> torch.Tensor:
        """``L~ @ z[m]`` for every signal of ``z [M, N, C]``."""
        if self._blocks is None:
            return torch.matmul(self.operator, z)
        m, n, c = z.shape
        forward, backward = self._blocks
        step = max(1, _BLOCK_NNZ // max(1, forward.values.numel()))
        # Slice only when chunking: a slice costs a zero-filled gradient buffer in the backward.
        outs = []
        for part in [z] if step >= m else z.split(step):
            count = part.shape[0]
            matrix = forward.get(count, z.device, z.dtype)
            transposed = backward.get(count, z.device, z.dtype)
            flat = part.reshape(count * n, c)
            outs.append(_SparseProduct.apply(flat, matrix, transposed).view(count, n, c))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _terms(self, x: torch.Tensor):
        """Yields ``T_k(L~) x`` for ``k = 0 .. K-1``, each ``[M, N, C]``."""
        *_, n, c = x.shape
        if n != self.num_nodes:
            raise ValueError(f"expected {self.num_nodes} nodes, got {n}")
        z_prev = x.reshape(-1, n, c)
        yield z_prev
        if self.order == 1:
            return
        z = self._apply_operator(z_prev)
        yield z
        for _ in range(2, self.order):
            # Out of place first: an in-place update of the product (a view) would make the
            # backward copy it through CopySlices.
            z_prev, z = z, self._apply_operator(z).mul(2.0).sub_(z_prev)
            yield z

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """The Chebyshev terms of ``x [..., N, C]``: ``[..., N, K*C]``, term-major
        (channels ``k*C .. k*C+C-1`` hold ``T_k(L~) x``), so ``basis(x) @ weight`` is the conv."""
        *lead, n, c = x.shape
        return torch.cat(list(self._terms(x)), dim=-1).view(*lead, n, self.order * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., N, C_in]`` -> ``[..., N, C_out]``."""
        *lead, n, c = x.shape
        theta = self.weight.view(self.order, c, -1)
        out = None
        # sum_k (T_k x) Theta_k accumulated in one output buffer (GEMMs with beta = 1).
        for k, term in enumerate(self._terms(x)):
            flat = term.reshape(-1, c)
            if out is None:
                bias = self.bias
                out = flat @ theta[0] if bias is None else torch.addmm(bias, flat, theta[0])
            else:
                out = out.addmm_(flat, theta[k])
        return out.view(*lead, n, -1)


class GatedFusion(nn.Module):
    """STTN's learned gate between two branches of the same width.

    ``g = sigmoid(W_s Y_s + W_g Y_g + b)`` (per element), ``Y = g * Y_s + (1 - g) * Y_g``.
    The two maps run as one accumulated product (the second GEMM adds into the first's output),
    with no concatenation and no separate addition or bias pass.

    Args:
        dim: channels of both branches.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_s = nn.Linear(dim, dim, bias=True)
        self.proj_g = nn.Linear(dim, dim, bias=False)

    def forward(self, y_s: torch.Tensor, y_g: torch.Tensor) -> torch.Tensor:
        """Both ``[..., dim]``; returns the gated mix, same shape."""
        d = y_s.shape[-1]
        logits = torch.addmm(self.proj_s.bias, y_s.reshape(-1, d), self.proj_s.weight.t())
        logits = logits.addmm_(y_g.reshape(-1, d), self.proj_g.weight.t())
        gate = torch.sigmoid(logits).view(y_s.shape)
        # y_g + g * (y_s - y_g) is the same mix with one fewer full-size product.
        return torch.lerp(y_g, y_s, gate)
