"""ODE blocks of STGODE (Fang et al., KDD 2021) and GRAM-ODE (Liu, Shojaee, Reddy, TMLR 2023).

Hidden states are ``[B, N, T, C]`` (batch, nodes, time, channels). Every ODE is solved over an
explicit time grid by `solve`: ``method="euler"`` on ``[0, 1]`` is the single Euler step of size
1 that the official code takes, computed by the field's own folded Euler map (equal to
torchdiffeq's ``euler``, tested); ``rk4``, ``dopri5`` and the adjoint run through
``torchdiffeq.odeint`` / ``odeint_adjoint`` on the same vector field.

GRAM-ODE's multi-ODE module (`GramODEModule`) holds, per the official ``odegcn.py``:
- a learnable mask ``M`` (``[N, N]``) added to the graph operator, and a temporal gate ``TA``
  (``W3, W4`` in ``R^{T x T}``), both shared by the global and the edge ODE;
- the global node ODE ``dH/dt = p (A+M) H - H + TA(H) - H + H W~ - H + H0`` with
  ``p = sigmoid(alpha) / 2`` per node, ``W' = W diag(clamp(d, 0, 1)) W^T`` and
  ``W~ = (1 + beta) W' - beta W' W'^T W'``, ``H0`` the detached initial state;
- ``K`` local ODEs of the same form (with a scalar gate shared by the ``K`` tokens) on the ``K``
  tokens of a node-attention summary of ``H``, each solved on ``[0, 1, ..., T/K]``;
- the edge ODE on ``E[b, i, j, t] = mean_c H[b, i, t, c] + mean_c H[b, j, t, c]``:
  ``dE/dt = p (A+M) E - E + TA_e(E) - E + E0``;
- the message filter (local output clamped to ``global +- c``), the aggregation layer and the
  update layer.

The edge ODE's state is ``[B, N, N, T]``. ``edge_mode="factorized"`` computes the one-Euler-step
solution in closed form without forming that tensor: ``E0 = u_i + u_j`` stays of the form
``a_i(t) + c_i u_j(t) + v_j(t)`` after one step (the operator acts on ``i``, the gate on time),
and the aggregation's linear map over ``j`` is applied to the factors. It is exact (the test
compares it with the dense solve) and needs ``O(B N T)`` memory instead of ``O(B N^2 T)``.

Interpretation choices where the spec leaves the code's detail open (documented, tested):
``TA(H)[b, n, t, c] = sum_s G[b, c, t, s] H[b, n, s, c]`` with
``G = sigmoid(sum_n (H W3)[n, t, c] (H W4)[n, s, c])``; ``TA_e(E) = E G_e`` with
``G_e = sigmoid(sum_{i,j} (E W3)^T (E W4))`` per batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torchdiffeq import odeint, odeint_adjoint
except ImportError:  # pragma: no cover - the "ode" extra is not installed
    odeint = odeint_adjoint = None

SOLVER_METHODS = ("euler", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun")


def stgode_operator(adj: torch.Tensor, alpha: float = 0.8) -> torch.Tensor:
    """STGODE's graph operator ``(alpha / 2) (I + D^-1/2 A D^-1/2)``, degrees floored at 1e-4."""
    adj = adj.to(torch.float32)
    degree = adj.sum(1).clamp_min(1e-4)
    scale = degree.rsqrt()
    normalized = scale[:, None] * adj * scale[None, :]
    return alpha / 2 * (torch.eye(adj.shape[0], dtype=adj.dtype, device=adj.device) + normalized)


def solve(
    func: nn.Module,
    y0: torch.Tensor,
    t: torch.Tensor | Sequence[float],
    method: str = "euler",
    adjoint: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> list[torch.Tensor]:
    """``odeint(func, y0, t)``: the list of states at the times of ``t`` (``t[0]`` first).

    Explicit Euler on the vector fields of this module (`_GraphODEFunc`) takes their own
    `_GraphODEFunc.euler`: the same update ``y + dt f(y)`` as torchdiffeq's ``euler``, with the
    field's ``- y`` terms and the step's ``+ y`` folded into small matrices once per solve
    (tested against ``odeint``). The models take one to three such steps on tensors of a single
    window, where torchdiffeq's per-call bookkeeping and the unfolded passes cost more than the
    arithmetic.
    """
    if odeint is None:
        raise ImportError("ODE models need torchdiffeq: pip install 'stgraph-forecast[ode]'")
    if method not in SOLVER_METHODS:
        raise ValueError(f"ODE method must be one of {SOLVER_METHODS}, got {method!r}")
    if method == "euler" and not adjoint and isinstance(func, _GraphODEFunc):
        return func.euler(y0, [float(v) for v in t])
    t = torch.as_tensor(t, dtype=y0.dtype, device=y0.device)
    solver = odeint_adjoint if adjoint else odeint
    kwargs = {"rtol": rtol, "atol": atol} if method in ("dopri5", "bosh3", "adaptive_heun") else {}
    return list(solver(func, y0, t, method=method, **kwargs).unbind(0))


def mixing_weight(w: torch.Tensor, d: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """``W' = W diag(clamp(d, 0, 1)) W^T``; with ``beta`` the pre-2022 STGODE correction
    ``(1 + beta) W' - beta W' W'^T W'``. Works batched over leading axes."""
    wp = (w * d.clamp(0, 1).unsqueeze(-2)) @ w.transpose(-1, -2)
    if beta:
        wp = (1 + beta) * wp - beta * (wp @ wp.transpose(-1, -2) @ wp)
    return wp


def _minus_identity(matrix: torch.Tensor, count: float) -> torch.Tensor:
    """``matrix - count * I`` over the last two axes. The vector fields subtract the state once
    per term (``... - H + H W - H ...``); folding those into a small mixing matrix saves full-size
    passes over the state in the forward and the backward."""
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return matrix - count * eye


def _total(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum(tensors)`` without Python's ``0 +`` first pass over a full-size tensor."""
    return sum(tensors[1:], tensors[0])


def pairwise_gated_mean(
    terms: Sequence[torch.Tensor], weight: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """GRAM-ODE's aggregation ``mean over pairs i != j of u_i * sigmoid(u_j)``, times ``weight``.

    Computed as ``((sum_i u_i)(sum_j s_j) - sum_i u_i s_i) / (K (K - 1))`` with
    ``s = sigmoid(u)``: one sigmoid per term instead of one per pair, and fewer full-size passes.
    The mean's divisor and ``weight`` (a scalar) scale the result in one pass.
    """
    count = len(terms)
    if count < 2:
        raise ValueError("the aggregation needs at least two terms")
    gates = [torch.sigmoid(u) for u in terms]
    total = _total(terms) * _total(gates) - _total([u * s for u, s in zip(terms, gates)])
    return total * (weight / (count * (count - 1)))


class _MessageFilter(torch.autograd.Function):
    """``clamp(local, glob - c, glob + c)`` for a scalar tensor ``c``, as
    ``glob + clamp(local - glob, -c, c)`` with a hand-written backward that saves one tensor:
    autograd's tensor-bound clamp saves both bounds and builds its three gradients with
    ``where`` over full-size bool masks (1.8 ms against 0.85 ms for one 207-node window's
    forward and backward). For ``c < 0`` the bounds cross and, as with ``torch.clamp``, every
    value is ``glob + c``."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, glob: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        gap = local - glob
        ctx.save_for_backward(gap, bound)
        return glob + torch.clamp(gap, -bound, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gap, bound = ctx.saved_tensors
        grad_local = grad * (gap.abs() <= bound).to(grad.dtype)  # 0 everywhere when c < 0
        grad_glob = grad - grad_local
        # d/dc: +1 above the band, -1 below it; +1 everywhere when the bounds cross.
        outside = (grad_glob * torch.sign(gap)).sum()
        grad_bound = torch.where(bound < 0, grad.sum(), outside).reshape(bound.shape)
        return grad_local, grad_glob, grad_bound


def message_filter(local: torch.Tensor, glob: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """GRAM-ODE's message filter: the local output clamped to ``glob +- bound`` (``bound`` a
    one-element tensor), i.e. ``torch.clamp(local, glob - bound, glob + bound)``."""
    return _MessageFilter.apply(local, glob, bound)


class TemporalGate(nn.Module):
    """The shared temporal gate ``TA`` (``W3, W4 in R^{T x T}``, standard normal init)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.w3 = nn.Parameter(torch.randn(steps, steps))
        self.w4 = nn.Parameter(torch.randn(steps, steps))

    def nodes(self, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``[B, N, T, C]``: per-channel ``T x T`` sigmoid gate applied along time, times
        ``scale``.

        The gate ``sum_n (W3^T h_n)(W4^T h_n)^T`` equals ``W3^T (sum_n h_n h_n^T) W4``
        (``h_n`` the ``T``-vector of node ``n`` in one channel), so the node sum runs once on
        ``h`` and the ``T x T`` weights act on the small ``[B, C, T, T]`` moments: two batched
        products on the large tensor instead of four einsums that each permute it.
        """
        by_channel = h.permute(0, 3, 2, 1).contiguous()  # [B, C, T, N], one copy for both uses
        moments = by_channel @ by_channel.transpose(-1, -2)  # [B, C, T, T]
        gate = torch.sigmoid(self.w3.t() @ moments @ self.w4)
        if scale != 1.0:
            gate = gate * scale
        return (gate @ by_channel).permute(0, 3, 2, 1)

    def edge_matrix(self, e: torch.Tensor) -> torch.Tensor:
        """``[B, T, T]`` gate of a dense edge state ``[B, N, N, T]``."""
        left = e @ self.w3
        right = e @ self.w4
        return torch.sigmoid(torch.einsum("bijt,bijs->bts", left, right))

    def edge_matrix_factored(self, u: torch.Tensor) -> torch.Tensor:
        """`edge_matrix` of ``E = u_i + u_j`` from ``u [B, N, T]`` in ``O(N T^2)``."""
        n = u.shape[1]
        p, q = u @ self.w3, u @ self.w4
        cross = torch.einsum("bit,bis->bts", p, q)
        sums = torch.einsum("bt,bs->bts", p.sum(1), q.sum(1))
        return torch.sigmoid(2 * n * cross + 2 * sums)


class NodeAttention(nn.Module):
    """Multi-head self-attention across nodes with separate key and value widths and no output
    projection (GRAM-ODE's ``MultiHeadAttention``: head ``h`` yields slice ``h`` of the output).

    `stgraph.nn.attention.MultiHeadAttention` ties key and value widths and projects its output,
    so it cannot express this layer.
    """

    def __init__(self, d_in: int, d_k: int, d_v: int, heads: int) -> None:
        super().__init__()
        if d_k % heads or d_v % heads:
            raise ValueError(f"d_k {d_k} and d_v {d_v} must be divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(d_in, d_k)
        self.k = nn.Linear(d_in, d_k)
        self.v = nn.Linear(d_in, d_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, d_in] -> [B, N, d_v]``."""
        b, n, _ = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, -1).transpose(1, 2)
        k = self.k(x).view(b, n, h, -1).transpose(1, 2)
        v = self.v(x).view(b, n, h, -1).transpose(1, 2)
        d_k, d_v = q.shape[-1], v.shape[-1]
        # The fused kernel wants equal head widths. Zero columns appended to the narrower side
        # change neither the scores (the scale stays 1/sqrt(d_k)) nor the real output columns,
        # and cost less than the unfused path, which materialises [B, heads, N, N] weights
        # (351 MB per local attention of a 207-node batch of 64).
        width = max(d_k, d_v)
        q, k, v = (F.pad(x, (0, width - x.shape[-1])) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(d_k))[..., :d_v]
        return out.transpose(1, 2).reshape(b, n, -1)


# ----------------------------------------------------------------------------- vector fields
class _GraphODEFunc(nn.Module):
    """What every vector field here shares: a learnable per-node diffusion rate ``alpha``
    (``p = sigmoid(alpha) / 2``), the operator and initial state set by `prepare` before each
    solve (the ``+ x0`` restart term), and explicit Euler steps (`euler`). The fields are
    autonomous: ``t`` is accepted for ``odeint`` and ignored."""

    def __init__(self, alpha_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.alpha = nn.Parameter(0.8 * torch.ones(alpha_shape))
        self._adj: torch.Tensor | None = None
        self._x0: torch.Tensor | None = None

    def prepare(self, adj: torch.Tensor, x0: torch.Tensor) -> None:
        self._adj, self._x0 = adj, x0.detach()

    def rated_operator(self) -> torch.Tensor:
        """``p_i A[i, j]`` with ``p = sigmoid(alpha) / 2``: the per-node rate folded into the
        ``N x N`` operator (one small product) instead of scaling the large state."""
        rate = torch.sigmoid(self.alpha) / 2
        return rate.unsqueeze(-1) * self._adj

    def euler(self, y0: torch.Tensor, grid: Sequence[float]) -> list[torch.Tensor]:
        """Explicit Euler over ``grid``: ``y_{i+1} = y_i + dt_i f(y_i)``; the states at every
        time of ``grid``. The step's small matrices are built once per distinct ``dt``."""
        steppers: dict[float, Callable[[torch.Tensor], torch.Tensor]] = {}
        states = [y0]
        for start, end in itertools.pairwise(grid):
            dt = end - start
            if dt not in steppers:
                steppers[dt] = self.stepper(dt)
            states.append(steppers[dt](states[-1]))
        return states

    def stepper(self, dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """The Euler map ``y -> y + dt f(y)``, with the field's terms folded into it."""
        raise NotImplementedError

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The vector field, for ``odeint``: the unit Euler step less the state."""
        return self.stepper(1.0)(y) - y


def _spread(operator: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``sum_m operator[n, m] h[b, m, ...]`` as one batched product on the node axis.

    ``bmm`` with the operator expanded (a view) rather than ``operator @ h``: broadcast
    ``matmul`` of a matrix with a batch computes the transposed product and copies it back,
    which made the forward and backward 1.5x slower (207 nodes, 768 columns)."""
    b, n = h.shape[:2]
    return torch.bmm(operator.expand(b, n, n), h.reshape(b, n, -1)).view(h.shape)


class GlobalODEFunc(_GraphODEFunc):
    """GRAM-ODE's global node ODE on ``[B, N, T, C]`` (see the module docstring).

    Call `prepare` with the operator ``A + M`` and the initial state before solving.
    """

    def __init__(self, num_nodes: int, channels: int, gate: TemporalGate, beta: float) -> None:
        super().__init__((num_nodes,))
        self.w = nn.Parameter(torch.eye(channels))
        self.d = nn.Parameter(torch.ones(channels))
        self.beta = beta
        self._gate = (gate,)  # shared with the edge ODE: held, not registered twice

    def stepper(self, dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
        # y + dt f(y): dt scales the operator and the gate; "+ y" and the three "- y" fold
        # into the channel mixing dt W~ + (1 - 3 dt) I.
        operator = dt * self.rated_operator()
        mix = _minus_identity(dt * mixing_weight(self.w, self.d, self.beta), 3 * dt - 1)
        gate, x0 = self._gate[0], self._x0

        def step(h: torch.Tensor) -> torch.Tensor:
            out = _spread(operator, h) + gate.nodes(h, dt)
            return torch.add(out + h @ mix, x0, alpha=dt)

        return step


class LocalODEFunc(_GraphODEFunc):
    """GRAM-ODE's ``K`` local node ODEs, solved together on ``[B, N, K, C]`` (token ``k`` of
    node ``n``: the layout the node attention produces, so no transposes).

    Each token ``k`` has its own ``alpha_k`` (per node), ``W_k`` and ``d_k``; the scalar gate pair
    ``(w3, w4)`` is shared by the tokens: ``TA(h) = sigmoid(w3 w4 sum_n h^2) h`` per channel.
    """

    def __init__(self, tokens: int, num_nodes: int, channels: int, beta: float) -> None:
        super().__init__((tokens, num_nodes))
        self.w = nn.Parameter(torch.eye(channels).repeat(tokens, 1, 1))
        self.d = nn.Parameter(torch.ones(tokens, channels))
        self.gate = nn.Parameter(torch.randn(2))
        self.beta = beta

    def stepper(self, dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
        rate = dt * (torch.sigmoid(self.alpha) / 2).t().unsqueeze(-1)  # [N, K, 1]
        mix = _minus_identity(dt * mixing_weight(self.w, self.d, self.beta), 3 * dt - 1)
        coupling = self.gate[0] * self.gate[1]
        adj, x0 = self._adj, self._x0

        def step(h: torch.Tensor) -> torch.Tensor:
            gated = dt * torch.sigmoid(coupling * h.square().sum(1, keepdim=True))  # [B,1,K,C]
            out = _spread(adj, h) * rate + gated * h
            return torch.add(out + torch.einsum("bnkc,kcd->bnkd", h, mix), x0, alpha=dt)

        return step


class EdgeODEFunc(_GraphODEFunc):
    """GRAM-ODE's edge ODE on the dense state ``[B, N, N, T]``."""

    def __init__(self, num_nodes: int, gate: TemporalGate) -> None:
        super().__init__((num_nodes,))
        self._gate = (gate,)

    def stepper(self, dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
        operator, x0 = dt * self.rated_operator(), self._x0

        def step(e: torch.Tensor) -> torch.Tensor:
            gate = _minus_identity(dt * self._gate[0].edge_matrix(e), 2 * dt - 1)  # [B, T, T]
            return torch.add(_spread(operator, e) + e @ gate.unsqueeze(1), x0, alpha=dt)

        return step

    def euler_step_factored(
        self, u: torch.Tensor, step: float, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """One Euler step from ``E0 = u_i + u_j`` followed by ``Linear(N -> D)`` over ``j``,
        without forming ``E``: ``[B, N, T] -> [B, N, T, D]``. Equal to the dense path."""
        operator = self.rated_operator()  # [N, N]
        gate = self._gate[0].edge_matrix_factored(u)  # [B, T, T]
        ug = u @ gate  # [B, N, T] @ [B, T, T]
        frozen = u.detach()  # the "+ E0" term is the detached initial state
        # E1[i, j] = a_i + c_i u_j + v_j (see the module docstring).
        a = u + step * (torch.einsum("ik,bkt->bit", operator, u) - 2 * u + ug + frozen)
        c = step * operator.sum(1)  # [N]
        v = u + step * (-2 * u + ug + frozen)
        w = weight.t()  # [N(j), D]
        out = a.unsqueeze(-1) * w.sum(0) + c[None, :, None, None] * (
            torch.einsum("bjt,jd->btd", u, w)
        ).unsqueeze(1)
        out = out + torch.einsum("bjt,jd->btd", v, w).unsqueeze(1)
        return out if bias is None else out + bias


class STGODEFunc(_GraphODEFunc):
    """STGODE's vector field (commit e5e7bfc, without the beta correction):
    ``f = p A H - H + H W - H + (H over time) W2 - H + H0``."""

    def __init__(self, num_nodes: int, channels: int, steps: int) -> None:
        super().__init__((num_nodes,))
        self.w = nn.Parameter(torch.eye(channels))
        self.d = nn.Parameter(torch.ones(channels))
        self.w2 = nn.Parameter(torch.eye(steps))
        self.d2 = nn.Parameter(torch.ones(steps))

    def stepper(self, dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
        # As GlobalODEFunc.stepper; the time mixing acts on the time axis: W2^T h.
        operator = dt * self.rated_operator()
        mix = _minus_identity(dt * mixing_weight(self.w, self.d), 3 * dt - 1)
        timed = dt * mixing_weight(self.w2, self.d2).t()
        x0 = self._x0

        def step(h: torch.Tensor) -> torch.Tensor:
            out = _spread(operator, h) + h @ mix + timed @ h
            return torch.add(out, x0, alpha=dt)

        return step


class STGODEBlockODE(nn.Module):
    """STGODE's ODE layer: solve on ``t_grid`` (one Euler step of size 6 officially), ReLU."""

    def __init__(
        self,
        num_nodes: int,
        channels: int,
        steps: int,
        t_grid: Sequence[float] = (0.0, 6.0),
        method: str = "euler",
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        self.func = STGODEFunc(num_nodes, channels, steps)
        self.t_grid = tuple(t_grid)
        self.method = method
        self.adjoint = adjoint

    def forward(self, h: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
        self.func.prepare(operator, h)
        return F.relu(solve(self.func, h, self.t_grid, self.method, self.adjoint)[-1])


# ----------------------------------------------------------------------------- GRAM-ODE module
class GramODEModule(nn.Module):
    """GRAM-ODE's multi-ODE module (``ODEG``): ``[B, N, T, C] -> [B, N, T, C]``.

    Args:
        num_nodes, channels, steps: N, C and T of the hidden state.
        tokens: number of local ODEs ``K`` (``T`` must be divisible by it).
        local_heads, local_dk: the node attention feeding the local ODEs (32 heads, 512).
        t_global: time grid of the global and the edge ODE (``[0, 1]``: one step of size 1).
        local_dt: step of the local grid ``[0, dt, ..., (T/K) dt]``.
        method, adjoint, rtol, atol: solver settings (`solve`).
        beta: the ``W~`` correction (0.6 in GRAM-ODE).
        edge_mode: ``dense``, ``factorized`` (needs Euler on a two-point grid), ``auto``
            (factorized when possible) or ``off`` (no edge ODE; its aggregation terms drop out).
        clip: ``raw`` (official, ``c`` may go negative) or ``softplus`` (``c > 0``).
        mask_init: ``randn`` (official) or ``zeros`` for the learnable mask ``M``.
    """

    def __init__(
        self,
        num_nodes: int,
        channels: int,
        steps: int,
        tokens: int = 4,
        local_heads: int = 32,
        local_dk: int = 512,
        t_global: Sequence[float] = (0.0, 1.0),
        local_dt: float = 1.0,
        method: str = "euler",
        adjoint: bool = False,
        rtol: float = 1e-3,
        atol: float = 1e-4,
        beta: float = 0.6,
        edge_mode: str = "auto",
        clip: str = "raw",
        mask_init: str = "randn",
    ) -> None:
        super().__init__()
        if steps % tokens:
            raise ValueError(f"steps {steps} must be divisible by the local tokens {tokens}")
        if edge_mode not in ("auto", "dense", "factorized", "off"):
            raise ValueError(f"edge_mode must be auto, dense, factorized or off, got {edge_mode!r}")
        if clip not in ("raw", "softplus"):
            raise ValueError(f"clip must be 'raw' or 'softplus', got {clip!r}")
        single_euler = method == "euler" and len(t_global) == 2
        if edge_mode == "factorized" and not single_euler:
            raise ValueError("edge_mode='factorized' needs method='euler' on a two-point grid")
        self.edge_mode = (
            ("factorized" if single_euler else "dense") if edge_mode == "auto" else edge_mode
        )
        self.steps, self.tokens, self.channels = steps, tokens, channels
        self.t_global = tuple(float(v) for v in t_global)
        self.t_local = tuple(local_dt * i for i in range(steps // tokens + 1))
        self.solver = {"method": method, "adjoint": adjoint, "rtol": rtol, "atol": atol}
        self.clip = clip
        init = torch.randn if mask_init == "randn" else torch.zeros
        self.mask = nn.Parameter(init(num_nodes, num_nodes))
        self.gate = TemporalGate(steps)
        self.global_func = GlobalODEFunc(num_nodes, channels, self.gate, beta)
        self.local_attention = NodeAttention(
            steps * channels, local_dk, tokens * channels, local_heads
        )
        self.local_func = LocalODEFunc(tokens, num_nodes, channels, beta)
        self.edge_func = EdgeODEFunc(num_nodes, self.gate)
        self.clip_c = nn.Parameter(torch.randn(1))
        self.lin_local = nn.Linear(channels, channels)
        self.lin_global = nn.Linear(channels, channels)
        self.lin_edge = nn.Linear(num_nodes, channels)
        self.lin_update = nn.Linear(channels, channels)
        self.update_w = nn.Parameter(torch.randn(2))

    def _solve(self, func: nn.Module, y0: torch.Tensor, grid: tuple[float, ...]) -> torch.Tensor:
        return solve(func, y0, grid, **self.solver)

    def edge_features(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """The edge ODE followed by ``Linear(N -> C)`` over ``j``: ``[B, N, T, C]``."""
        u = h.mean(-1)  # [B, N, T]
        if self.edge_mode == "factorized":
            self.edge_func.prepare(adj, u[:, :1, :1])  # the factored step needs no dense E0
            step = self.t_global[1] - self.t_global[0]
            return self.edge_func.euler_step_factored(
                u, step, self.lin_edge.weight, self.lin_edge.bias
            )
        e0 = u.unsqueeze(2) + u.unsqueeze(1)  # [B, N(i), N(j), T]
        self.edge_func.prepare(adj, e0)
        e = self._solve(self.edge_func, e0, self.t_global)[-1]
        return self.lin_edge(e.transpose(2, 3))

    def forward(self, h: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
        b, n, t, c = h.shape
        adj = operator + self.mask
        self.global_func.prepare(adj, h)
        glob = self._solve(self.global_func, h, self.t_global)[-1]

        summary = self.local_attention(h.reshape(b, n, t * c))  # [B, N, K*C]
        tokens = summary.view(b, n, self.tokens, c)  # [B, N, K, C]
        self.local_func.prepare(adj, tokens)
        states = self._solve(self.local_func, tokens, self.t_local)[1:]  # S x [B, N, K, C]
        local = torch.stack(states, dim=3).view(b, n, t, c)  # time index = k * S + s

        bound = F.softplus(self.clip_c) if self.clip == "softplus" else self.clip_c
        local = message_filter(local, glob, bound)

        terms = [self.lin_local(local), self.lin_global(glob)]
        if self.edge_mode != "off":
            terms.append(self.edge_features(h, adj))
        w = self.update_w
        return F.relu(w[0] * torch.sigmoid(self.lin_update(h)) + pairwise_gated_mean(terms, w[1]))
