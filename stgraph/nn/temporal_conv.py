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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        self.dropout = nn.Dropout(dropout)
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
        b, n, t, c = x.shape
        y = x.reshape(b * n, t, c).transpose(1, 2)  # [B*N, C, T] for Conv1d
        h = y
        for conv, dilation in zip(self.convs, self.dilations):
            # Causal: pad on the left only, so step t sees steps <= t.
            h = F.pad(h, ((self.kernel_size - 1) * dilation, 0))
            h = self.dropout(F.relu(F.conv1d(h, conv.weight, conv.bias, dilation=dilation)))
        residual = self.downsample(y) if self.downsample is not None else y
        out = F.relu(h + residual)
        return out.transpose(1, 2).reshape(b, n, t, -1)
