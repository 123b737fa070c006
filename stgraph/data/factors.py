"""Price-volume factors and labels of a stock panel, in Qlib's conventions (Stockformer's inputs).

Inputs are ``[T, N]`` arrays per field (days x stocks): open, high, low, close, volume and
optionally vwap, with a boolean ``mask`` ``[T, N]`` (True = the stock traded that day). The
values of unobserved entries are ignored (0 or NaN both fine); a non-finite or non-positive
price on an observed day counts as unobserved too. Nothing is forward-filled: every output
comes with its own mask, False wherever a day it needs is unobserved, and holds 0 there.

- `alpha360`: Qlib's Alpha360 for the requested days only. For day ``t`` and each stock, the
  last 60 days (lags 59..0) of close, open, high, low and vwap divided by ``close[t]``, and of
  volume divided by ``volume[t]``: ``[B, N, 360]`` in Qlib's column order (field-major: CLOSE59
  .. CLOSE0, OPEN59 .., HIGH, LOW, VWAP, VOLUME; reshape to ``[B, N, 6, 60]`` for a sequence).
  Without a vwap the typical price ``(high + low + close) / 3`` stands in for it.
- `alpha158_subset`: a vectorised subset of Alpha158 over the whole panel, ``[T, N, F]``, for
  caching (see `ALPHA158_WINDOWS` and the function's docstring for the list).
- `cross_sectional_zscore`: per-day z-scores over that day's observed stocks (mean/std, or the
  robust median/MAD form of Qlib's ``RobustZScoreNorm``, clipped).
- `qlib_labels`: ``close[t+2] / close[t+1] - 1`` (Qlib's LABEL0) and its direction.

Memory: `alpha360` holds ``B * N * 360`` float32 plus gathers of ``B * 60 * N`` per field (about
86 MB for a batch of 32 days of 1,000 stocks); the full Alpha360 tensor of 2,500 days x 1,000
stocks would be 3.6 GB, which is why it is built per batch. `alpha158_subset` holds ``T * N * F``
float32 (2,500 x 1,000 x 38 = 380 MB) and a few ``T * N`` float64 temporaries.

Measured on this project's CPU (one thread, 2,500 days x 1,000 stocks, 2% of days missing):
`alpha360` of 32 days 0.12 s (0.27 s on the first call), peak 191 MB traced;
`alpha158_subset` 4.3 s, peak 954 MB traced; the robust z-score of its output 11 s (a sort per
day and feature); `qlib_labels` 0.02 s.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from stgraph.errors import InputError

ALPHA360_LAGS = 60
ALPHA360_FIELDS = ("close", "open", "high", "low", "vwap", "volume")
ALPHA158_WINDOWS = (5, 10, 20, 30, 60)
# Up to this many entries a [T, N, F] z-score runs in one go (a batch's factors); above, one
# feature at a time keeps the float64 temporaries at [T, N].
_ZSCORE_AT_ONCE = 1 << 23


def _check_shapes(fields: dict[str, np.ndarray | None], mask: np.ndarray) -> None:
    if mask.ndim != 2:
        raise InputError(f"stock panel: mask must be [T, N], got shape {mask.shape}.")
    for name, values in fields.items():
        if values is not None and np.shape(values) != mask.shape:
            raise InputError(
                f"stock panel: '{name}' has shape {np.shape(values)}, the mask {mask.shape}."
            )


def _observed(fields: dict[str, np.ndarray | None], mask: np.ndarray) -> np.ndarray:
    """The effective mask: observed, finite, prices > 0 and volume >= 0."""
    ok = np.array(mask, dtype=bool)
    for name, values in fields.items():
        if values is None:
            continue
        arr = np.asarray(values)
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(arr) & ((arr >= 0) if name == "volume" else (arr > 0))
    return ok


def _check_panel(fields: dict[str, np.ndarray | None], mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    _check_shapes(fields, mask)
    return _observed(fields, mask)


def alpha360(
    days: np.ndarray | torch.Tensor,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    mask: np.ndarray,
    vwap: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha360 features of the days ``days`` (``[B]`` indices into the panel's T axis).

    Returns:
        ``features`` ``[B, N, 360]`` float32 (layout in the module docstring) and ``mask``
        ``[B, N, 360]`` bool. An entry is masked when its lagged day is unobserved or before the
        panel starts, or its base (``close[t]``, ``volume[t]``) is unobserved or 0.

    Raises:
        InputError: mismatched shapes, or a day index outside ``[0, T)``.
    """
    fields = {"open": open, "high": high, "low": low, "close": close, "volume": volume}
    fields["vwap"] = vwap
    mask = np.asarray(mask, dtype=bool)
    _check_shapes(fields, mask)
    num_days = mask.shape[0]
    days = np.asarray(days, dtype=np.int64).reshape(-1)
    if days.size and (days.min() < 0 or days.max() >= num_days):
        raise InputError(f"alpha360: day indices must lie in [0, {num_days}), got {days}.")
    lags = np.arange(ALPHA360_LAGS - 1, -1, -1)
    index = days[:, None] - lags  # [B, 60], oldest first as Qlib's CLOSE59 .. CLOSE0
    inside = index >= 0
    index = np.maximum(index, 0)
    # Only the rows the batch needs are read (B * 60 of the T days), never the whole panel.
    rows = {name: None if v is None else np.asarray(v)[index] for name, v in fields.items()}
    seen = _observed(rows, mask[index]) & inside[:, :, None]  # [B, 60, N]
    base_ok = seen[:, -1]  # lag 0 is day t

    def gather(name: str) -> np.ndarray:
        return np.where(seen, rows[name], 0.0).astype(np.float64)

    if vwap is None:  # the typical price stands in for a missing VWAP
        vw = (gather("high") + gather("low") + gather("close")) / 3.0
    else:
        vw = gather("vwap")
    base_close = np.where(base_ok, rows["close"][:, -1], 1.0)
    base_volume = np.where(base_ok, rows["volume"][:, -1], 0.0)
    volume_ok = base_volume > 0
    batch, _, stocks = seen.shape
    out = np.zeros((batch, stocks, 6 * ALPHA360_LAGS), dtype=np.float32)
    out_mask = np.zeros(out.shape, dtype=bool)
    for i, name in enumerate(ALPHA360_FIELDS):
        if name == "volume":
            values = gather("volume") / np.where(volume_ok, base_volume, 1.0)[:, None]
            good = seen & volume_ok[:, None]
        else:
            values = (vw if name == "vwap" else gather(name)) / base_close[:, None]
            good = seen & base_ok[:, None]
        cols = slice(i * ALPHA360_LAGS, (i + 1) * ALPHA360_LAGS)
        out[:, :, cols] = np.where(good, values, 0.0).transpose(0, 2, 1)  # [B, N, 60]
        out_mask[:, :, cols] = good.transpose(0, 2, 1)
    return torch.from_numpy(out), torch.from_numpy(out_mask)


def _rolling_sums(values: np.ndarray, ok: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Trailing ``window``-day count, sum and sum of squares of the observed values."""
    x = np.where(ok, values, 0.0)
    stats = []
    for part in (ok.astype(np.float64), x, x * x):
        total = np.cumsum(part, axis=0)
        total[window:] = total[window:] - total[:-window].copy()
        stats.append(total)
    return tuple(stats)


def _mean_std(
    count: np.ndarray, total: np.ndarray, squares: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = np.maximum(count, 2)  # where count < 2 the feature is masked anyway
    mean = total / n
    return mean, np.sqrt(np.maximum(squares - total * mean, 0.0) / (n - 1))


def _trailing_extreme(values: np.ndarray, ok: np.ndarray, window: int, high: bool) -> np.ndarray:
    fill = -np.inf if high else np.inf
    x = np.where(ok, values, fill)
    # The filters are centred; origin shifts them to cover days t - window + 1 .. t.
    origin = (window - 1) // 2
    func = maximum_filter1d if high else minimum_filter1d
    return func(x, window, axis=0, mode="constant", cval=fill, origin=origin)


def alpha158_subset(
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    mask: np.ndarray,
    windows: tuple[int, ...] = ALPHA158_WINDOWS,
    min_fraction: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A subset of Qlib's Alpha158, vectorised over the whole panel (cache it once per panel).

    Per day ``t`` and stock, with Qlib's names and formulas:

    - ``KMID = (close - open) / open``, ``KLEN = (high - low) / open``,
      ``KMID2 = (close - open) / (high - low)`` (0 when ``high == low``);
    - per window ``d``: ``ROCd = close[t-d] / close``, ``MAd = mean(close) / close``,
      ``STDd = std(close) / close`` (sample std, ``ddof=1``), ``MAXd = max(high) / close``,
      ``MINd = min(low) / close``, ``VMAd = mean(volume) / volume``,
      ``VSTDd = std(volume) / volume``, over days ``t-d+1 .. t``.

    A rolling feature is defined where day t is observed and at least ``ceil(min_fraction * d)``
    of its ``d`` days are (default: all of them; the statistics use the observed days only);
    ``ROCd`` needs day ``t-d`` observed; volume ratios need ``volume[t] > 0``.

    Returns:
        ``features`` ``[T, N, F]`` float32 (0 where undefined), ``mask`` ``[T, N, F]`` bool and
        the ``F`` feature names.
    """
    fields = {"open": open, "high": high, "low": low, "close": close, "volume": volume}
    ok = _check_panel(fields, mask)
    if not 0 < min_fraction <= 1:
        raise InputError(f"alpha158_subset: min_fraction must be in (0, 1], got {min_fraction}.")
    o, h, lo, c, v = (
        np.where(ok, np.asarray(f, dtype=np.float64), np.nan) for f in fields.values()
    )
    c_safe = np.where(ok, c, 1.0)
    v_ok = ok & (np.nan_to_num(v) > 0)
    v_safe = np.where(v_ok, v, 1.0)
    num = 3 + 7 * len(windows)
    # Preallocated: stacking a list of features would hold them twice.
    feats = np.zeros((*ok.shape, num), dtype=np.float32)
    masks = np.zeros((*ok.shape, num), dtype=bool)
    names: list[str] = []

    def add(name: str, values: np.ndarray, good: np.ndarray) -> None:
        feats[:, :, len(names)] = np.where(good, values, 0.0)
        masks[:, :, len(names)] = good
        names.append(name)

    with np.errstate(invalid="ignore", divide="ignore"):
        rng = h - lo
        add("KMID", (c - o) / o, ok)
        add("KLEN", rng / o, ok)
        add("KMID2", np.where(rng > 0, (c - o) / rng, 0.0), ok)
        for d in windows:
            if not isinstance(d, (int, np.integer)) or d < 2:
                raise InputError(f"alpha158_subset: windows must be integers >= 2, got {d}.")
            enough = max(2, int(np.ceil(min_fraction * d)))
            lagged = np.full_like(c, np.nan)
            lagged[d:] = c[:-d]
            add(f"ROC{d}", lagged / c_safe, ok & np.isfinite(lagged))
            count, total, squares = _rolling_sums(np.nan_to_num(c), ok, d)
            good = ok & (count >= enough)
            mean, std = _mean_std(count, total, squares)
            add(f"MA{d}", mean / c_safe, good)
            add(f"STD{d}", std / c_safe, good)
            add(f"MAX{d}", _trailing_extreme(h, ok, d, True) / c_safe, good)
            add(f"MIN{d}", _trailing_extreme(lo, ok, d, False) / c_safe, good)
            count, total, squares = _rolling_sums(np.nan_to_num(v), ok, d)
            good = v_ok & (count >= enough)
            mean, std = _mean_std(count, total, squares)
            add(f"VMA{d}", mean / v_safe, good)
            add(f"VSTD{d}", std / v_safe, good)
    return feats, masks, names


def cross_sectional_zscore(
    values: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
    robust: bool = False,
    clip: float | None = 3.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Per-day z-scores over that day's observed stocks, for ``values`` ``[T, N]`` or ``[T, N, F]``.

    ``robust=False``: ``(x - mean) / std`` (population std, Qlib's ``CSZScoreNorm``).
    ``robust=True``: ``(x - median) / (1.4826 * MAD)`` (Qlib's ``RobustZScoreNorm``, applied per
    day). Either is then clipped to ``[-clip, clip]`` unless ``clip`` is None. A day with fewer than
    two observed stocks or no spread gives 0; unobserved entries give 0. ``dtype`` is the precision
    of the arithmetic (float32 is three times faster on a batch of factors; the result is float32).
    """
    x = torch.as_tensor(values)
    m = torch.as_tensor(mask, dtype=torch.bool)
    if m.shape != x.shape:
        raise InputError(f"cross_sectional_zscore: mask {tuple(m.shape)} != {tuple(x.shape)}.")
    if x.dim() == 3 and x.numel() > _ZSCORE_AT_ONCE:
        # One feature at a time keeps the float64 temporaries at [T, N], not [T, N, F].
        out = torch.empty(x.shape, dtype=torch.float32)
        for f in range(x.shape[2]):
            out[:, :, f] = cross_sectional_zscore(x[:, :, f], m[:, :, f], robust, clip, dtype)
        return out
    x = x.to(dtype)
    m = m & x.isfinite()
    if robust:
        centre = _masked_median(x, m)
        scale = 1.4826 * _masked_median((x - centre).abs(), m)
    else:
        w = m.to(dtype)
        n = w.sum(1, keepdim=True).clamp(min=1)
        filled = x.where(m, 0.0)
        centre = filled.sum(1, keepdim=True) / n
        scale = (((filled - centre) * w).square().sum(1, keepdim=True) / n).sqrt()
    usable = (m.sum(1, keepdim=True) >= 2) & (scale > 0)
    z = ((x - centre) / scale.where(usable, 1.0)).where(m & usable, 0.0)
    if clip is not None:
        z = z.clamp(-clip, clip)
    return z.float()


def _masked_median(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Median over dim 1 of the observed entries, the mean of the two middle ones for an even
    count (as ``np.nanmedian``; ``torch.nanmedian`` returns the lower one)."""
    ordered = x.masked_fill(~m, torch.inf).sort(dim=1).values
    n = m.sum(1, keepdim=True).clamp(min=1)
    lower = ordered.gather(1, (n - 1) // 2)
    upper = ordered.gather(1, n // 2)
    return (lower + upper) / 2


def qlib_labels(
    close: np.ndarray, mask: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Qlib's LABEL0 at day t: ``close[t+2] / close[t+1] - 1``, known at the close of t+2.

    Returns:
        ``label`` ``[T, N]`` float32 (0 where masked), ``direction`` ``[T, N]`` bool (label > 0)
        and ``mask`` ``[T, N]`` bool: False when day t+1 or t+2 is unobserved or past the end.
        Day t itself need not be observed (the label does not use it); combine with the input
        mask to train only on stocks seen at t.
    """
    ok = _check_panel({"close": close}, mask)
    c = np.asarray(close, dtype=np.float64)
    label = np.zeros(c.shape)
    good = np.zeros(c.shape, dtype=bool)
    good[:-2] = ok[1:-1] & ok[2:]
    label[:-2] = np.where(good[:-2], c[2:] / np.where(ok[1:-1], c[1:-1], 1.0) - 1.0, 0.0)
    label = torch.from_numpy(label.astype(np.float32))
    good_t = torch.from_numpy(good)
    return label, (label > 0) & good_t, good_t
