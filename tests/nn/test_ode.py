"""ODE solves and GRAM-ODE / STGODE blocks."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.linalg import expm
from torchdiffeq import odeint

from stgraph.nn.ode import (
    EdgeODEFunc,
    GlobalODEFunc,
    GramODEModule,
    LocalODEFunc,
    NodeAttention,
    STGODEBlockODE,
    STGODEFunc,
    TemporalGate,
    message_filter,
    mixing_weight,
    pairwise_gated_mean,
    solve,
    stgode_operator,
)


class Linear(torch.nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, t, x):
        return x @ self.a.T


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_linear_ode_matches_matrix_exponential(method):
    torch.manual_seed(0)
    a = torch.randn(4, 4, dtype=torch.float64) * 0.5
    x0 = torch.randn(3, 4, dtype=torch.float64)
    grid = torch.linspace(0, 1.0, 21, dtype=torch.float64)
    states = solve(Linear(a), x0, grid, method=method, rtol=1e-9, atol=1e-10)
    for k in (5, 20):
        expected = x0 @ torch.from_numpy(expm(a.numpy() * float(grid[k]))).T
        torch.testing.assert_close(states[k], expected, rtol=1e-6, atol=1e-7)


def test_single_euler_step_is_one_step():
    a = torch.eye(2, dtype=torch.float64)
    x0 = torch.ones(1, 2, dtype=torch.float64)
    states = solve(Linear(a), x0, [0.0, 1.0], method="euler")
    torch.testing.assert_close(states[-1], 2 * x0)  # x0 + 1 * f(x0), not e * x0


def test_operator_and_mixing_weight():
    adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    op = stgode_operator(adj, 0.8)
    torch.testing.assert_close(op, 0.4 * torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    w, d = torch.eye(3), torch.tensor([0.5, 2.0, -1.0])
    torch.testing.assert_close(mixing_weight(w, d), torch.diag(torch.tensor([0.5, 1.0, 0.0])))
    wp = torch.diag(torch.tensor([0.5, 1.0, 0.0]))
    torch.testing.assert_close(mixing_weight(w, d, 0.6), 1.6 * wp - 0.6 * wp @ wp @ wp)


def test_edge_gate_factored_matches_dense():
    torch.manual_seed(0)
    gate = TemporalGate(6)
    u = torch.randn(2, 5, 6) * 0.1
    dense = gate.edge_matrix(u.unsqueeze(2) + u.unsqueeze(1))
    torch.testing.assert_close(gate.edge_matrix_factored(u), dense)


def _module(**kw):
    return GramODEModule(6, 8, 12, tokens=4, local_heads=2, local_dk=8, **kw)


def test_gram_ode_module_shapes_and_factorized_edge_ode_is_exact():
    torch.manual_seed(0)
    m = _module(edge_mode="dense")
    h = torch.randn(3, 6, 12, 8) * 0.2
    op = stgode_operator((torch.rand(6, 6) > 0.5).float())
    dense = m(h, op)
    assert dense.shape == (3, 6, 12, 8)
    m.edge_mode = "factorized"
    torch.testing.assert_close(m(h, op), dense, rtol=1e-5, atol=1e-6)
    grads = []
    for mode in ("dense", "factorized"):
        m.edge_mode = mode
        x = h.clone().requires_grad_()
        m.edge_features(x, op + m.mask).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_gram_ode_module_other_solvers(method):
    torch.manual_seed(0)
    m = _module(method=method, edge_mode="auto", mask_init="zeros", clip="softplus")
    assert m.edge_mode == "dense"  # the closed form holds for one Euler step only
    h = torch.randn(2, 6, 12, 8) * 0.1
    out = m(h, stgode_operator(torch.ones(6, 6)))
    assert out.shape == h.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="factorized"):
        _module(method=method, edge_mode="factorized")


def test_stgode_ode_block():
    torch.manual_seed(0)
    block = STGODEBlockODE(5, 4, 12)
    h = torch.randn(2, 5, 12, 4)
    out = block(h, stgode_operator(torch.ones(5, 5)))
    assert out.shape == h.shape and (out >= 0).all()


@pytest.mark.parametrize("c", [0.4, -0.3])
def test_message_filter_matches_clamp_in_values_and_gradients(c):
    # c < 0 is the official code's raw bound: the bounds cross and torch.clamp returns glob + c.
    torch.manual_seed(5)
    local = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    glob = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    bound = torch.tensor([c], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    results = []
    for filt in (message_filter, lambda lo, g, b: torch.clamp(lo, g - b, g + b)):
        out = filt(local, glob, bound)
        grads = torch.autograd.grad((out * weights).sum(), (local, glob, bound))
        results.append((out, *grads))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference)
    inside = ((local - glob).abs() <= c).sum().item()
    assert (0 < inside < local.numel()) if c > 0 else inside == 0  # both regimes exercised
    torch.autograd.gradcheck(message_filter, (local, glob, bound))


def test_pairwise_gated_mean_equals_the_sum_over_ordered_pairs():
    torch.manual_seed(4)
    terms = [torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(3)]
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    expected = sum(terms[i] * torch.sigmoid(terms[j]) for i, j in pairs) / len(pairs)
    torch.testing.assert_close(pairwise_gated_mean(terms), expected)
    weight = torch.tensor(-0.7, dtype=torch.float64)
    torch.testing.assert_close(pairwise_gated_mean(terms, weight), -0.7 * expected)
    two = terms[:2]
    expected_two = (two[0] * torch.sigmoid(two[1]) + two[1] * torch.sigmoid(two[0])) / 2
    torch.testing.assert_close(pairwise_gated_mean(two), expected_two)
    with pytest.raises(ValueError):
        pairwise_gated_mean(terms[:1])


@pytest.mark.parametrize(("d_k", "d_v", "heads"), [(512, 256, 32), (384, 12, 12), (32, 64, 4)])
def test_node_attention_with_unequal_key_and_value_widths_matches_softmax(d_k, d_v, heads):
    torch.manual_seed(5)
    layer = NodeAttention(40, d_k, d_v, heads)
    x = torch.randn(3, 9, 40)

    def split(t):
        return t.view(3, 9, heads, -1).transpose(1, 2)

    q, k, v = split(layer.q(x)), split(layer.k(x)), split(layer.v(x))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_k // heads), dim=-1)
    expected = (weights @ v).transpose(1, 2).reshape(3, 9, d_v)
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-5)


def test_vector_fields_match_their_written_out_formulas():
    torch.manual_seed(6)
    b, n, t, c, k = 2, 5, 12, 3, 4
    adj = torch.rand(n, n)
    h, h0 = torch.randn(b, n, t, c), torch.randn(b, n, t, c)
    with torch.no_grad():
        gate = TemporalGate(t)
        glob = GlobalODEFunc(n, c, gate, beta=0.6)
        glob.alpha.normal_()
        glob.w.normal_()
        glob.prepare(adj, h0)
        p = (torch.sigmoid(glob.alpha) / 2)[:, None, None]
        spread = p * torch.einsum("nm,bmtc->bntc", adj, h)
        mixed = h @ mixing_weight(glob.w, glob.d, 0.6)
        expected = spread - h + gate.nodes(h) - h + mixed - h + h0
        torch.testing.assert_close(glob(0, h), expected)

        # The gate, written out: G = sigmoid(sum_n (h W3)^T (h W4)) per channel, along time.
        left = torch.einsum("bnsc,st->bntc", h, gate.w3)
        right = torch.einsum("bnsc,st->bntc", h, gate.w4)
        weights = torch.sigmoid(torch.einsum("bntc,bnsc->bcts", left, right))
        torch.testing.assert_close(gate.nodes(h), torch.einsum("bcts,bnsc->bntc", weights, h))

        edge = EdgeODEFunc(n, gate)
        edge.alpha.normal_()
        e, e0 = torch.randn(b, n, n, t), torch.randn(b, n, n, t)
        edge.prepare(adj, e0)
        p = (torch.sigmoid(edge.alpha) / 2)[:, None, None]
        spread = p * torch.einsum("ik,bkjt->bijt", adj, e)
        weights = torch.sigmoid(torch.einsum("bijt,bijs->bts", e @ gate.w3, e @ gate.w4))
        expected = spread + e @ weights.unsqueeze(1) - e - e + e0
        torch.testing.assert_close(edge(0, e), expected)

        local = LocalODEFunc(k, n, c, beta=0.6)
        local.alpha.normal_()
        local.w.normal_()
        tokens, tokens0 = torch.randn(b, n, k, c), torch.randn(b, n, k, c)  # [B, N, K, C]
        local.prepare(adj, tokens0)
        p = (torch.sigmoid(local.alpha) / 2).t()[None, :, :, None]
        spread = p * torch.einsum("nm,bmkc->bnkc", adj, tokens)
        scalar = local.gate[0] * local.gate[1]
        gated = torch.sigmoid(scalar * tokens.square().sum(1, keepdim=True)) * tokens
        mixed = torch.einsum("bnkc,kcd->bnkd", tokens, mixing_weight(local.w, local.d, 0.6))
        expected = spread - tokens + gated - tokens + mixed - tokens + tokens0
        # Folding "+ y - 3 y" into the mixing matrix rounds differently in float32.
        torch.testing.assert_close(local(0, tokens), expected, rtol=1e-5, atol=1e-5)

        stgode = STGODEFunc(n, c, t)
        stgode.alpha.normal_()
        stgode.w2.normal_()
        stgode.prepare(adj, h0)
        p = (torch.sigmoid(stgode.alpha) / 2)[:, None, None]
        spread = p * torch.einsum("nm,bmtc->bntc", adj, h)
        mixed = h @ mixing_weight(stgode.w, stgode.d)
        timed = torch.einsum("bntc,ts->bnsc", h, mixing_weight(stgode.w2, stgode.d2))
        expected = spread - h + mixed - h + timed - h + h0
        torch.testing.assert_close(stgode(0, h), expected)


def _fields(n=5, t=12, c=3, k=4):
    gate = TemporalGate(t)
    fields = {
        "global": (GlobalODEFunc(n, c, gate, beta=0.6), (2, n, t, c)),
        "local": (LocalODEFunc(k, n, c, beta=0.6), (2, n, k, c)),
        "edge": (EdgeODEFunc(n, gate), (2, n, n, t)),
        "stgode": (STGODEFunc(n, c, t), (2, n, t, c)),
    }
    with torch.no_grad():
        gate.w3.mul_(0.3)
        gate.w4.mul_(0.3)
        for func, _ in fields.values():
            for name, param in func.named_parameters():
                if not name.startswith("_gate"):
                    param.add_(0.3 * torch.randn_like(param))
    return fields


@pytest.mark.parametrize("name", ["global", "local", "edge", "stgode"])
def test_folded_euler_steps_match_torchdiffeq(name):
    """The folded Euler path of `solve` gives torchdiffeq's Euler states and gradients on an
    uneven grid (three steps, two step sizes)."""
    torch.manual_seed(7)
    func, shape = _fields()[name]
    adj = torch.rand(5, 5)
    grid = [0.0, 0.5, 1.0, 2.5]
    results = []
    for fast in (True, False):
        func.zero_grad()
        y0 = (0.5 * torch.randn(shape, generator=torch.Generator().manual_seed(1))).requires_grad_()
        func.prepare(adj, y0)
        if fast:
            states = solve(func, y0, grid, method="euler")
        else:
            states = odeint(func, y0, torch.tensor(grid), method="euler")
        assert len(states) == len(grid)
        weights = torch.linspace(-1, 1, states[-1].numel()).view(shape)
        (states[-1] * weights + states[1].square()).sum().backward()
        grads = [y0.grad] + [p.grad for p in func.parameters() if p.grad is not None]
        results.append(([s.detach() for s in states], grads))
    for fast, slow in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert len(results[0][1]) == len(results[1][1]) > 1
    for fast, slow in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
