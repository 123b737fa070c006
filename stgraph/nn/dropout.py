"""Inverted dropout with a cheaper mask on CPU.

`Dropout` on CPU draws one random byte per element (eight at a time, as
full-range int64 draws) and applies a float keep-mask, instead of
`torch.nn.functional.dropout`'s Bernoulli draw and bool mask: about 10x cheaper on a
10M-element tensor. The drop probability is rounded to a multiple of 1/256 (0.1 -> 26/256 =
0.1016) and kept values are scaled by the exact inverse keep rate, so the expectation is unchanged.

`relu_dropout` fuses a ReLU in front: ``dropout(relu(x))`` as ``x * g`` with one saved float
factor ``g`` (the keep scale where ``x > 0``, else 0), so the backward pass is one product
instead of a mask rebuild and a ReLU backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _random_bytes(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uniform random bytes of ``shape``, drawn 8 at a time as full-range int64 values (one
    generator call per 8 bytes instead of per byte: about 4x cheaper than a uint8 ``random_``).

    ``random_(-2**63, None)`` is the full 64-bit range; the default ``random_()`` range stops at
    ``2**63 - 1``, which would leave the top byte of each draw in ``[0, 127]``."""
    count = math.prod(shape)
    words = torch.empty(-(-count // 8), dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(torch.uint8)[:count].view(shape)


def _keep_scale(random_bytes: torch.Tensor, threshold: int, dtype: torch.dtype) -> torch.Tensor:
    """``1 / keep_rate`` where ``byte >= threshold``, else 0, as a float mask. Built in float
    arithmetic because CPU kernels on bool masks (``masked_fill``, ``where``, bool products) are
    not vectorised: this is about 4x cheaper than a masked fill of the input."""
    keep = random_bytes.to(dtype).ge_(threshold)
    return keep.mul_(256.0 / (256 - threshold))


class _ByteDropout(torch.autograd.Function):
    """Dropout with a mask drawn from random bytes: drop where ``byte < threshold``. Only the
    bytes are saved for the backward pass (1 byte per element, not a 4-byte mask)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: int) -> torch.Tensor:
        random_bytes = _random_bytes(x.shape, x.device)
        ctx.threshold = threshold
        ctx.save_for_backward(random_bytes)
        return x * _keep_scale(random_bytes, threshold, x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (random_bytes,) = ctx.saved_tensors
        return grad * _keep_scale(random_bytes, ctx.threshold, grad.dtype), None


class _ByteReluDropout(torch.autograd.Function):
    """``dropout(relu(x))`` as ``x * g``, ``g`` the keep scale where ``x > 0`` and 0 elsewhere;
    ``g`` is both the forward factor and the whole backward (the ReLU's derivative included)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: int) -> torch.Tensor:
        factor = _keep_scale(_random_bytes(x.shape, x.device), threshold, x.dtype)
        factor.mul_(x > 0)
        ctx.save_for_backward(factor)
        return x * factor

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def _threshold(p: float) -> int:
    """The drop probability as a byte threshold: drop where ``byte < threshold``."""
    return round(p * 256)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout; on CPU with one random byte per element (see the module docstring)."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    threshold = _threshold(p)
    if threshold == 0:
        return x
    if threshold >= 256:
        return torch.zeros_like(x)
    return _ByteDropout.apply(x, threshold)


def relu_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``dropout(relu(x), p)``: on CPU in training, fused (see the module docstring)."""
    if not training or x.device.type != "cpu" or not 0 < _threshold(p) < 256:
        return dropout(F.relu(x), p, training)
    return _ByteReluDropout.apply(x, _threshold(p))


class Dropout(nn.Module):
    """`torch.nn.Dropout` with the cheaper CPU mask of `dropout` (no parameters or buffers)."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
