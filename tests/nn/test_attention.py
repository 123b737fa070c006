"""Attention, encodings and graph convolution building blocks (stgraph.nn)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stgraph.graphs.graph import Graph
from stgraph.graphs.normalize import chebyshev_basis, scaled_laplacian
from stgraph.nn import graph_conv
from stgraph.nn.attention import MultiHeadAttention, TransformerBlock, neighbour_index
from stgraph.nn.dropout import Dropout, dropout, relu_dropout
from stgraph.nn.encodings import (
    CalendarEmbedding,
    LaplacianEncoding,
    LearnablePositionalEncoding,
    NodeEmbedding,
    SinusoidalPositionalEncoding,
)
from stgraph.nn.graph_conv import ChebConv, GatedFusion


def ring_graph(n: int, chords: bool = True) -> Graph:
    src = torch.arange(n)
    dst = (src + 1) % n
    edges = [torch.stack([src, dst]), torch.stack([dst, src])]
    if chords:
        edges.append(torch.tensor([[0, n // 2], [n // 2, 0]]))
    index = torch.cat(edges, dim=1)
    return Graph(index, torch.rand(index.shape[1]) + 0.5, n)


def permuted_graph(graph: Graph, perm: torch.Tensor) -> Graph:
    """The same graph with node ``perm[i]`` renamed ``i``."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    return Graph(inverse[graph.edge_index], graph.edge_weight, graph.num_nodes)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_attention_shapes_along_nodes_and_time():
    x = torch.randn(2, 5, 7, 8)
    assert MultiHeadAttention(8, 2)(x).shape == x.shape
    for axis in (-2, -3):
        assert TransformerBlock(8, 2, 16, 0.1, axis=axis)(x).shape == x.shape


def test_temporal_axis_is_attention_over_time_per_node():
    block = TransformerBlock(8, 2, 16, 0.0, axis=-3).eval()
    x = torch.randn(2, 5, 7, 8)
    expected = block.attention(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(block._attend(x), expected, atol=1e-6)


def test_full_attention_is_permutation_equivariant_over_nodes():
    block = TransformerBlock(8, 2, 16, 0.0, axis=-2).eval()
    x = torch.randn(2, 3, 9, 8)
    perm = torch.randperm(9)
    assert torch.allclose(block(x[:, :, perm]), block(x)[:, :, perm], atol=1e-5)


def test_neighbourhood_attention_is_permutation_equivariant():
    graph = ring_graph(9)
    block = TransformerBlock(8, 2, 16, 0.0, axis=-2).eval()
    idx, valid = neighbour_index(graph, 4)
    perm = torch.randperm(9)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(9)
    # Node i of the permuted input is node perm[i]; its neighbours are renamed the same way.
    pidx, pvalid = inverse[idx[perm]], valid[perm]
    x = torch.randn(2, 3, 9, 8)
    out = block(x, neighbours=idx, neighbour_mask=valid)
    pout = block(x[:, :, perm], neighbours=pidx, neighbour_mask=pvalid)
    assert torch.allclose(pout, out[:, :, perm], atol=1e-5)


def test_permuted_neighbour_index_is_the_relabelled_index_up_to_ties():
    graph = ring_graph(9)
    perm = torch.randperm(9)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(9)
    idx, _ = neighbour_index(graph, 3, metric="weight")
    pidx, _ = neighbour_index(permuted_graph(graph, perm), 3, metric="weight")
    # Random weights make weighted distances distinct, so the sets match exactly.
    assert torch.equal(pidx.sort(1).values, inverse[idx[perm]].sort(1).values)


def test_neighbourhood_with_all_nodes_equals_full_attention():
    n = 7
    attn = MultiHeadAttention(8, 2).eval()
    idx, valid = neighbour_index(ring_graph(n), n)
    x = torch.randn(3, 4, n, 8)
    assert torch.allclose(attn(x, neighbours=idx, neighbour_mask=valid), attn(x), atol=1e-5)
    # Chunked (no autograd) path gives the same result.
    with torch.no_grad():
        assert torch.allclose(attn(x, neighbours=idx), attn(x), atol=1e-5)


def test_neighbourhood_only_sees_neighbours():
    graph = ring_graph(8, chords=False)
    attn = MultiHeadAttention(4, 1).eval()
    idx, valid = neighbour_index(graph, 3)  # node 0: itself, 1 and 7
    assert idx[0, 0] == 0 and set(idx[0].tolist()) == {0, 1, 7}
    x = torch.randn(1, 1, 8, 4)
    y = x.clone()
    y[..., 4, :] += 10.0  # far from node 0
    out_x = attn(x, neighbours=idx, neighbour_mask=valid)
    out_y = attn(y, neighbours=idx, neighbour_mask=valid)
    assert torch.allclose(out_x[..., 0, :], out_y[..., 0, :])


def test_neighbour_index_pads_unreachable_nodes():
    graph = Graph(torch.tensor([[0, 1], [1, 0]]), torch.ones(2), 4)  # nodes 2, 3 isolated
    idx, valid = neighbour_index(graph, 3)
    assert idx[0, 0] == 0 and idx[0, 1] == 1 and valid[0].tolist() == [True, True, False]
    assert idx[2, 0] == 2 and valid[2].tolist() == [True, False, False]
    attn = MultiHeadAttention(4, 2).eval()
    out = attn(torch.randn(1, 4, 4), neighbours=idx, neighbour_mask=valid)
    assert torch.isfinite(out).all()


def test_causal_temporal_attention_ignores_the_future():
    block = TransformerBlock(8, 2, 16, 0.0, axis=-3).eval()
    x = torch.randn(1, 6, 3, 8)
    y = x.clone()
    y[:, 4:] += 5.0
    a, b = block(x, is_causal=True), block(y, is_causal=True)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)


def test_cheb_conv_matches_dense_basis_and_sparse_equals_dense():
    graph = ring_graph(11)
    lap = scaled_laplacian(graph)
    x = torch.randn(2, 3, 11, 4)
    dense = ChebConv(4, 5, lap, order=3, sparse=False)
    sparse = ChebConv(4, 5, lap, order=3, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    basis = chebyshev_basis(graph, 3)
    theta = dense.weight.view(3, 4, 5)
    expected = sum(basis[k] @ x @ theta[k] for k in range(3)) + dense.bias
    assert torch.allclose(dense(x), expected, atol=1e-5)
    assert torch.allclose(sparse(x), expected, atol=1e-5)
    # Gradients flow through the sparse product.
    x.requires_grad_(True)
    sparse(x).sum().backward()
    assert x.grad is not None and sparse.weight.grad is not None


def test_gated_fusion_half_gate_is_the_mean_and_saturated_gate_picks_a_branch():
    gate = GatedFusion(4)
    y_s, y_g = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        for p in gate.parameters():
            p.zero_()
    assert torch.allclose(gate(y_s, y_g), (y_s + y_g) / 2)
    with torch.no_grad():
        gate.proj_s.bias.fill_(50.0)
    assert torch.allclose(gate(y_s, y_g), y_s, atol=1e-6)
    with torch.no_grad():
        gate.proj_s.bias.fill_(-50.0)
    assert torch.allclose(gate(y_s, y_g), y_g, atol=1e-6)


def test_encodings_shapes_and_calendar_lookup():
    graph = ring_graph(10)
    assert NodeEmbedding(10, 6)().shape == (10, 6)
    lap = LaplacianEncoding.from_graph(graph, 4, 6)
    assert lap().shape == (10, 6) and lap.eigenvectors.shape == (10, 4)
    assert SinusoidalPositionalEncoding(12, 6)().shape == (12, 6)
    assert LearnablePositionalEncoding(12, 6)().shape == (12, 6)
    cal = CalendarEmbedding(288, 6)
    tod = torch.tensor([[0.0, 1 / 288, 287 / 288]])
    dow = torch.tensor([[0, 1, 6]])
    out = cal(tod, dow)
    assert out.shape == (1, 3, 6)
    expected = cal.time_of_day.weight[[0, 1, 287]] + cal.day_of_week.weight[[0, 1, 6]]
    assert torch.allclose(out[0], expected)


def test_sparse_cheb_conv_on_a_directed_operator_matches_dense_values_and_gradients(monkeypatch):
    n = 13
    operator = torch.randn(n, n) * (torch.rand(n, n) < 0.2)  # not symmetric
    x = torch.randn(2, 5, n, 3)
    dense = ChebConv(3, 4, operator, order=4, sparse=False)
    sparse = ChebConv(3, 4, operator, order=4, sparse=True)
    assert sparse.is_sparse and not dense.is_sparse
    sparse.load_state_dict(dense.state_dict())
    basis = [torch.eye(n), operator]
    for _ in range(2, 4):
        basis.append(2 * operator @ basis[-1] - basis[-2])
    theta = dense.weight.view(4, 3, 4)
    expected = sum(basis[k] @ x @ theta[k] for k in range(4)) + dense.bias
    # Small blocks: the 10 signals go through the block-diagonal operator in chunks.
    monkeypatch.setattr(graph_conv, "_BLOCK_NNZ", 3 * int((operator != 0).sum()))
    grads = []
    for conv in (dense, sparse):
        xg = x.clone().requires_grad_(True)
        out = conv(xg)
        assert torch.allclose(out, expected, atol=1e-4)
        (out * torch.linspace(-1, 1, 4)).sum().backward()
        grads.append((xg.grad, conv.weight.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-4)
    # The basis is the same in both layouts, term-major.
    assert torch.allclose(dense.basis(x), sparse.basis(x), atol=1e-4)
    assert torch.allclose(dense.basis(x)[..., 3:6], operator @ x, atol=1e-5)


def test_cheb_conv_picks_the_sparse_operator_by_density():
    assert ChebConv(2, 2, scaled_laplacian(ring_graph(40))).is_sparse
    assert not ChebConv(2, 2, torch.randn(6, 6)).is_sparse


def test_byte_dropout_rate_scale_and_gradient():
    torch.manual_seed(1)
    x = torch.ones(200_000, requires_grad=True)
    out = dropout(x, 0.1)
    kept = out != 0
    # p is rounded to 26/256; kept values are scaled by the exact inverse keep rate.
    assert abs((~kept).float().mean().item() - 26 / 256) < 0.005
    assert torch.allclose(out[kept], torch.full_like(out[kept], 256 / 230))
    assert abs(out.mean().item() - 1.0) < 0.01
    out.backward(torch.full_like(out, 2.0))
    assert torch.equal(x.grad, torch.where(kept, 2.0 * 256 / 230, 0.0))
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_relu_dropout_equals_dropout_of_relu_in_values_and_gradient():
    x = torch.randn(50_000, requires_grad=True)
    grad = torch.randn(50_000)
    torch.manual_seed(2)
    fused = relu_dropout(x, 0.2)
    (fused_grad,) = torch.autograd.grad(fused, x, grad)
    torch.manual_seed(2)  # the same random bytes, so the same mask
    plain = dropout(torch.relu(x), 0.2)
    (plain_grad,) = torch.autograd.grad(plain, x, grad)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grad, plain_grad)
    dropped = (plain == 0) & (x > 0)
    assert abs(dropped.float().mean().item() / (x > 0).float().mean().item() - 51 / 256) < 0.01
    assert torch.equal(relu_dropout(x, 0.2, training=False), torch.relu(x))
    assert torch.equal(relu_dropout(x, 0.0), torch.relu(x))


def test_transformer_block_drops_only_the_branch_outputs():
    block = TransformerBlock(8, 2, 16, 0.1, axis=-2)
    # The FFN is Linear-ReLU-Linear, as in BERT and the STTN release: no dropout inside.
    assert [type(layer) for layer in block.ffn] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [m.p for m in block.modules() if isinstance(m, Dropout)] == [0.1, 0.1]


def test_gated_fusion_matches_its_formula():
    gate = GatedFusion(4)
    y_s, y_g = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    g = torch.sigmoid(gate.proj_s(y_s) + gate.proj_g(y_g))
    assert torch.allclose(gate(y_s, y_g), g * y_s + (1 - g) * y_g, atol=1e-6)
