"""Causal dilated temporal convolutions (the TCN of Bai et al. 2018 as used by STGODE/GRAM-ODE).

Tensors are ``[B, N, T, C]`` (batch, nodes, time, channels). Each level is a causal convolution
of kernel ``k`` and dilation ``2^level`` (left padding ``(k - 1) * dilation``, equivalent to the
reference code's pad-both-sides-then-chomp), then ReLU and dropout. The stack has one residual
connection around all levels: a ``1 x 1`` convolution when the input and output widths differ,
the identity otherwise, and ``ReLU(stack(x) + residual(x))`` is returned.

``faithful_bug=True`` reproduces an operator-precedence bug of the official STGODE code (kept in
GRAM-ODE): ``relu(net(y) + down(y) if down else y)`` parses as
``relu((net(y) + down(y)) if down else y)``, so a stack whose input and output widths agree
returns ``ReLU(x)`` and its convolutions are never used.

The convolutions run channels-last, as GEMMs on ``[B, N, T, C]``: one product per kernel tap, the
older taps' outputs shifted along time, then summed. ``Conv1d`` on
``[B * N, C, T]`` needs two transposes per stack and runs a 12-step convolution per row: a
64-wide stack's forward and backward measured 1.25-1.4x slower that way on this project's CPU
(``[2, 207, 12, 64]``, one thread). The weights are ordinary ``Conv1d`` parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stgraph.nn.dropout import Dropout, relu_dropout


class TemporalConvNet(nn.Module):
    """A stack of causal dilated convolutions over the time axis of ``[B, N, T, C]``.

    Args:
        in_channels: input width ``C``.
        widths: output width of each level (STGODE: ``[64, 32, 64]``).
        kernel_size: temporal kernel (2 in STGODE).
        dropout: dropout after each level's ReLU.
        faithful_bug: reproduce the official precedence bug (see the module docstring).
        init_std: standard deviation of the normal initialisation of the weights (0.01 in the
            reference code); ``None`` keeps PyTorch's default.
    """

    def __init__(
        self,
        in_channels: int,
        widths: list[int] | tuple[int, ...] = (64, 32, 64),
        kernel_size: int = 2,
        dropout: float = 0.2,
        faithful_bug: bool = False,
        init_std: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.faithful_bug = faithful_bug
        self.dilations = [2**level for level in range(len(widths))]
        self.convs = nn.ModuleList()
        width_in = in_channels
        for width in widths:
            self.convs.append(nn.Conv1d(width_in, width, kernel_size))
            width_in = width
        self.dropout = Dropout(dropout)  # its rate, applied fused with each level's ReLU
        self.downsample = (
            nn.Conv1d(in_channels, widths[-1], 1) if in_channels != widths[-1] else None
        )
        if init_std is not None:
            for conv in [*self.convs, *([self.downsample] if self.downsample else [])]:
                nn.init.normal_(conv.weight, 0.0, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, T, C_in] -> [B, N, T, C_out]``."""
        if self.faithful_bug and self.downsample is None:
            return F.relu(x)  # the official stack never runs its convolutions here
        h = x
        for conv, dilation in zip(self.convs, self.dilations):
            h = relu_dropout(
                causal_conv(h, conv.weight, conv.bias, dilation), self.dropout.p, self.training
            )
        if self.downsample is None:
            residual = x
        else:
            residual = F.linear(x, self.downsample.weight[..., 0], self.downsample.bias)
        return F.relu(h + residual)


def causal_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int
) -> torch.Tensor:
    """Causal dilated convolution over the time axis of ``[..., T, C_in]`` with a ``Conv1d``
    weight ``[C_out, C_in, k]``: ``out[t] = b + sum_j W[:, :, j] x[t - (k - 1 - j) d]``, with
    zeros before the first step (the same as left padding then ``F.conv1d``)."""
    k = weight.shape[-1]
    steps = x.shape[-2]
    out = F.linear(x, weight[:, :, k - 1], bias)
    for j in range(k - 1):
        shift = (k - 1 - j) * dilation
        if shift < steps:
            out = out + _TimeShift.apply(F.linear(x, weight[:, :, j]), shift)
    return out


class _TimeShift(torch.autograd.Function):
    """``y[..., t, :] = x[..., t - s, :]``, zeros for ``t < s`` (time is axis -2).

    Written as one concatenation each way: slicing then padding would zero-fill a full-size
    gradient buffer in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, shift: int) -> torch.Tensor:
        ctx.shift = shift
        zeros = x.new_zeros(*x.shape[:-2], shift, x.shape[-1])
        return torch.cat([zeros, x[..., : x.shape[-2] - shift, :]], dim=-2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        shift = ctx.shift
        zeros = grad.new_zeros(*grad.shape[:-2], shift, grad.shape[-1])
        return torch.cat([grad[..., shift:, :], zeros], dim=-2), None
