"""Per-window wavelet split of a series into a low- and a high-frequency part (Stockformer).

Stockformer (Ma et al., arXiv 2401.06139) splits every input window, per stock and along time,
with a one-level discrete wavelet transform ``sym2`` (``pytorch_wavelets`` in ``mode='zero'``):
``low = IDWT(cA, 0)`` and ``high = IDWT(0, cD)``, both reconstructed to the window length. Its
code inherits this from STWave, which calls ``pywt.wavedec`` / ``pywt.waverec`` and passes
``None`` for the coefficients it drops. `WaveletSplit` with ``causal=False`` reproduces that,
as fixed ``conv1d`` filters taken from ``pywt.Wavelet(name)`` (no trainable weight):

- ``low``: ``waverec([cA_J, 0, ..., 0])`` and ``high``: ``waverec([0, cD_J, ..., cD_1])``, both
  cut to the window length ``T`` (``waverec`` returns ``T + 1`` values for some odd ``T``).
- modes ``'zero'`` (Stockformer) and ``'symmetric'`` (pywt's default, STWave).

Being linear and exact, ``low + high == x`` up to rounding. But the split is two-sided: the low
part at day ``s`` of a window mixes days after ``s`` (up to the window's end), and the zero
padding bends both ends of the window.

``causal=True`` (the default, our clean variant) is the undecimated ("a trous") transform run as
one-sided filters: ``a_0 = x``, ``a_j[t] = sum_k g[k] a_{j-1}[t - 2^(j-1) k]`` with ``g =
dec_lo / sum(dec_lo)`` (unit gain at frequency 0), ``low = a_J`` and ``high = x - low``. Each
output at day ``t`` depends on days ``<= t`` only. The window is padded on the left by repeating
its first value (``pad='edge'``; a constant series then has ``high == 0``) or with zeros
(``pad='zero'``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from stgraph.errors import InputError


@lru_cache(maxsize=32)
def _filters(wavelet: str) -> dict[str, torch.Tensor]:
    try:
        import pywt
    except ImportError as exc:  # an optional dependency (the ``finance`` extra)
        raise InputError(
            "the wavelet split needs PyWavelets: pip install 'stgraph-forecast[finance]'."
        ) from exc
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError as exc:
        raise InputError(
            f"unknown wavelet '{wavelet}'; see pywt.wavelist(kind='discrete')."
        ) from exc
    if not w.orthogonal:
        raise InputError(f"wavelet '{wavelet}' is not orthogonal; use e.g. db1, db4, sym2, sym4.")
    names = ("dec_lo", "dec_hi", "rec_lo", "rec_hi")
    return {name: torch.tensor(getattr(w, name), dtype=torch.float64) for name in names}


def _full_conv(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``np.convolve(x, h)`` (full length) along the last axis of ``x`` ``[M, L]``."""
    kernel = h.flip(0).to(x.device, x.dtype).view(1, 1, -1)
    return F.conv1d(x.unsqueeze(1), kernel, padding=h.numel() - 1).squeeze(1)


def _dwt(
    x: torch.Tensor, f: dict[str, torch.Tensor], mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of ``pywt.dwt`` along the last axis of ``[M, L]``."""
    n, taps = x.shape[-1], f["dec_lo"].numel()
    size = (n + taps - 1) // 2
    offset = 1
    if mode == "symmetric":
        if taps - 1 > n:
            raise InputError(f"symmetric mode: a filter of {taps} taps is too long for {n} values.")
        x = torch.cat([x[:, : taps - 1].flip(1), x, x[:, n - taps + 1 :].flip(1)], dim=1)
        offset += taps - 1
    cut = slice(offset, offset + 2 * size - 1, 2)
    return _full_conv(x, f["dec_lo"])[:, cut], _full_conv(x, f["dec_hi"])[:, cut]


def _idwt(ca: torch.Tensor, cd: torch.Tensor, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """``pywt.idwt`` along the last axis (any mode: the extension only shapes the coefficients)."""
    taps, size = f["rec_lo"].numel(), ca.shape[-1]
    up_a = ca.new_zeros(ca.shape[0], 2 * size)
    up_d = ca.new_zeros(ca.shape[0], 2 * size)
    up_a[:, 0::2], up_d[:, 0::2] = ca, cd
    full = _full_conv(up_a, f["rec_lo"]) + _full_conv(up_d, f["rec_hi"])
    return full[:, taps - 2 : taps - 2 + 2 * size - taps + 2]


def wavedec(x: torch.Tensor, wavelet: str, level: int, mode: str = "zero") -> list[torch.Tensor]:
    """``pywt.wavedec(x, wavelet, mode, level)`` along the last axis: ``[cA_J, cD_J, .., cD_1]``."""
    f = _filters(wavelet)
    lead = x.shape[:-1]
    a = x.reshape(-1, x.shape[-1])
    details = []
    for _ in range(level):
        a, d = _dwt(a, f, mode)
        details.append(d)
    return [c.reshape(*lead, -1) for c in [a, *details[::-1]]]


def waverec(coeffs: list[torch.Tensor | None], wavelet: str) -> torch.Tensor:
    """``pywt.waverec(coeffs, wavelet)`` along the last axis; ``None`` stands for zeros."""
    f = _filters(wavelet)
    known = next(c for c in coeffs if c is not None)
    lead = known.shape[:-1]
    flat = [None if c is None else c.reshape(-1, c.shape[-1]) for c in coeffs]
    a = flat[0]
    for d in flat[1:]:
        # As pywt: a missing part is zeros shaped like the other; the extra approximation
        # coefficient of an odd level is dropped only when both parts are given.
        if a is None:
            a = torch.zeros_like(d)
        elif d is None:
            d = torch.zeros_like(a)
        elif a.shape[-1] == d.shape[-1] + 1:
            a = a[:, :-1]
        a = _idwt(a, d, f)
    return a.reshape(*lead, -1)


class WaveletSplit(nn.Module):
    """Split a series into ``(low, high)`` along its time axis; both keep the input's shape.

    Args:
        wavelet: a pywt orthogonal wavelet name (Stockformer: ``'sym2'``).
        level: decomposition levels ``J >= 1`` (Stockformer: 1).
        causal: True for the one-sided undecimated transform (no output at day t depends on a
            later day); False for Stockformer's per-window DWT/IDWT.
        mode: signal extension of the non-causal DWT: ``'zero'`` (Stockformer) or
            ``'symmetric'`` (pywt default, STWave).
        pad: left padding of the causal transform: ``'edge'`` (repeat day 0) or ``'zero'``.
        time_dim: the time axis of the inputs (1 for ``[B, T, N]`` or ``[B, T, N, C]``).
    """

    def __init__(
        self,
        wavelet: str = "sym2",
        level: int = 1,
        causal: bool = True,
        mode: Literal["zero", "symmetric"] = "zero",
        pad: Literal["edge", "zero"] = "edge",
        time_dim: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(level, int) or level < 1:
            raise InputError(f"WaveletSplit: level must be an integer >= 1, got {level}.")
        if mode not in ("zero", "symmetric"):
            raise InputError(f"WaveletSplit: mode must be 'zero' or 'symmetric', got '{mode}'.")
        if pad not in ("edge", "zero"):
            raise InputError(f"WaveletSplit: pad must be 'edge' or 'zero', got '{pad}'.")
        f = _filters(wavelet)
        self.wavelet, self.level, self.causal = wavelet, level, causal
        self.mode, self.pad, self.time_dim = mode, pad, time_dim
        lowpass = f["dec_lo"] / f["dec_lo"].sum()
        # Buffers, not parameters: the filters are fixed and follow .to(device).
        self.register_buffer("lowpass", lowpass.flip(0).view(1, 1, -1), persistent=False)

    def _causal_low(self, x: torch.Tensor) -> torch.Tensor:
        a = x.unsqueeze(1)
        kernel = self.lowpass.to(x.dtype)
        taps = kernel.shape[-1]
        for j in range(self.level):
            dilation = 2**j
            width = (taps - 1) * dilation
            if self.pad == "edge":
                a = torch.cat([a[..., :1].expand(-1, -1, width), a], dim=-1)
            else:
                a = F.pad(a, (width, 0))
            a = F.conv1d(a, kernel, dilation=dilation)
        return a.squeeze(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moved = x.movedim(self.time_dim, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        steps = flat.shape[-1]
        if self.causal:
            low = self._causal_low(flat)
            high = flat - low
        else:
            coeffs = wavedec(flat, self.wavelet, self.level, self.mode)
            zeros: list[torch.Tensor | None] = [None] * self.level
            low = waverec([coeffs[0], *zeros], self.wavelet)[:, :steps]
            high = waverec([None, *coeffs[1:]], self.wavelet)[:, :steps]
        shape = moved.shape
        return (
            low.reshape(shape).movedim(-1, self.time_dim),
            high.reshape(shape).movedim(-1, self.time_dim),
        )
