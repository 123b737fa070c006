"""Causal dilated TCN: correct residuals vs the official precedence bug."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stgraph.nn.temporal_conv import TemporalConvNet, causal_conv


def _hand_set(tcn: TemporalConvNet) -> None:
    """Level weights: kernel [w_prev, w_now] = [0, 1] (identity) on the first level and
    [1, 0] (copy of the step ``dilation`` back) on the others; zero biases."""
    with torch.no_grad():
        for level, conv in enumerate(tcn.convs):
            conv.weight.zero_()
            conv.bias.zero_()
            eye = torch.eye(conv.out_channels, conv.in_channels)
            conv.weight[:, :, 1 if level == 0 else 0] = eye


def test_same_width_residual_is_used_when_fixed():
    torch.manual_seed(0)
    tcn = TemporalConvNet(2, [2, 2], dropout=0.0).eval()
    _hand_set(tcn)
    x = torch.rand(1, 1, 5, 2)  # [B, N, T, C], positive so ReLUs pass values through
    # Level 0 copies x, level 1 (dilation 2) shifts it by 2 steps with zeros in front.
    shifted = torch.cat([torch.zeros(1, 1, 2, 2), x[:, :, :3]], dim=2)
    torch.testing.assert_close(tcn(x), F.relu(shifted + x))


def test_faithful_bug_returns_relu_input_when_widths_agree():
    tcn = TemporalConvNet(2, [2, 2], dropout=0.0, faithful_bug=True).eval()
    _hand_set(tcn)
    x = torch.randn(2, 3, 5, 2)
    torch.testing.assert_close(tcn(x), F.relu(x))
    # With a width change the official code does use its convolutions and the 1x1 residual.
    wide = TemporalConvNet(1, [2, 2], dropout=0.0, faithful_bug=True).eval()
    fixed = TemporalConvNet(1, [2, 2], dropout=0.0, faithful_bug=False).eval()
    fixed.load_state_dict(wide.state_dict())
    x = torch.randn(2, 3, 5, 1)
    torch.testing.assert_close(wide(x), fixed(x))


def test_causal_and_shapes():
    torch.manual_seed(0)
    tcn = TemporalConvNet(3, [8, 4, 8], dropout=0.0).eval()
    x = torch.randn(2, 4, 12, 3)
    y = tcn(x)
    assert y.shape == (2, 4, 12, 8)
    x2 = x.clone()
    x2[:, :, 7:] += 10.0  # changing the future must not change the past
    torch.testing.assert_close(tcn(x2)[:, :, :7], y[:, :, :7])


def test_causal_conv_equals_left_padded_conv1d_in_values_and_gradients():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for dilation in (1, 2, 4, 8):  # 8: the oldest tap falls before the window for every t
        ours = causal_conv(x, weight, bias, dilation)
        rows = x.reshape(6, 12, 5).transpose(1, 2)
        padded = F.pad(rows, ((3 - 1) * dilation, 0))
        ref = F.conv1d(padded, weight, bias, dilation=dilation).transpose(1, 2).reshape(2, 3, 12, 4)
        torch.testing.assert_close(ours, ref)
        grad = torch.randn_like(ref)
        ours_grads = torch.autograd.grad(ours, (x, weight, bias), grad)
        ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad)
        for a, b in zip(ours_grads, ref_grads):
            torch.testing.assert_close(a, b)
