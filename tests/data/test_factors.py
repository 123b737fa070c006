from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.data.factors import alpha158_subset, alpha360, cross_sectional_zscore, qlib_labels
from stgraph.errors import InputError


def _panel(days: int = 70, stocks: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, stocks)), axis=0))
    open_ = close * (1 + rng.normal(0, 0.01, close.shape))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    volume = rng.uniform(1e5, 1e6, close.shape)
    mask = np.ones(close.shape, dtype=bool)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "mask": mask}


def _reference_alpha360(p: dict[str, np.ndarray], t: int, n: int) -> np.ndarray:
    """Loop reference: one stock, one day, NaN where undefined."""
    vwap = (p["high"] + p["low"] + p["close"]) / 3
    out = []
    for name in ("close", "open", "high", "low", "vwap", "volume"):
        series = vwap if name == "vwap" else p[name]
        base = p["volume"][t, n] if name == "volume" else p["close"][t, n]
        for lag in range(59, -1, -1):
            day = t - lag
            seen = day >= 0 and p["mask"][day, n] and p["mask"][t, n]
            out.append(series[day, n] / base if seen else np.nan)
    return np.array(out)


def test_alpha360_matches_a_loop_reference_with_holes() -> None:
    p = _panel()
    p["mask"][65, 1] = False
    p["close"][65, 1] = np.nan  # an unobserved day may hold NaN ...
    p["open"][64, 2] = 0.0
    p["mask"][64, 2] = False  # ... or 0
    p["mask"][69, 0] = False  # the base day itself unobserved
    days = np.array([69, 66, 10])
    feats, mask = alpha360(days, **p)
    assert feats.shape == mask.shape == (3, 3, 360)
    for b, t in enumerate(days):
        for n in range(3):
            ref = _reference_alpha360(p, int(t), n)
            np.testing.assert_array_equal(mask[b, n].numpy(), np.isfinite(ref))
            np.testing.assert_allclose(feats[b, n].numpy(), np.nan_to_num(ref), rtol=1e-6)
    assert not feats.isnan().any()
    # CLOSE0 is the last close column and is 1 wherever defined.
    assert feats[1, :, 59].tolist() == [1.0, 1.0, 1.0]
    assert not mask[0, 0].any()  # stock 0 unobserved on day 69
    assert mask[2, 0].sum() == 11 * 6  # day 10: lags 0..10 exist


def test_alpha360_uses_given_vwap_and_masks_zero_volume_base() -> None:
    p = _panel()
    vwap = p["close"] * 1.5
    p["volume"][69, 2] = 0.0
    feats, mask = alpha360([69], **p, vwap=vwap)
    vwap_cols = slice(4 * 60, 5 * 60)
    np.testing.assert_allclose(feats[0, 0, vwap_cols].numpy()[-1], 1.5, rtol=1e-6)
    assert not mask[0, 2, 300:].any() and mask[0, 2, :300].all()


def test_alpha360_bad_day() -> None:
    with pytest.raises(InputError, match="day indices"):
        alpha360([70], **_panel())


def test_alpha158_by_hand() -> None:
    close = np.array([[10.0], [11.0], [12.0], [9.0]])
    p = {
        "open": np.array([[10.0], [10.0], [12.5], [10.0]]),
        "high": np.array([[10.5], [11.5], [13.0], [10.0]]),
        "low": np.array([[9.5], [10.0], [11.5], [8.0]]),
        "close": close,
        "volume": np.array([[100.0], [200.0], [300.0], [0.0]]),
        "mask": np.ones((4, 1), dtype=bool),
    }
    feats, mask, names = alpha158_subset(**p, windows=(2, 3))
    col = {name: i for i, name in enumerate(names)}
    assert len(names) == 3 + 7 * 2
    f = feats[:, 0]
    m = mask[:, 0]
    np.testing.assert_allclose(f[:, col["KMID"]], [0.0, 0.1, -0.04, -0.1], rtol=1e-6)
    np.testing.assert_allclose(f[:, col["KLEN"]], [0.1, 0.15, 0.12, 0.2], rtol=1e-6)
    np.testing.assert_allclose(f[1, col["KMID2"]], 1.0 / 1.5, rtol=1e-6)
    np.testing.assert_allclose(f[2, col["ROC2"]], 10 / 12, rtol=1e-6)
    assert m[:, col["ROC2"]].tolist() == [False, False, True, True]
    np.testing.assert_allclose(f[2, col["MA3"]], 11 / 12, rtol=1e-6)
    np.testing.assert_allclose(f[3, col["STD2"]], np.std([12, 9], ddof=1) / 9, rtol=1e-6)
    np.testing.assert_allclose(f[3, col["MAX3"]], 13 / 9, rtol=1e-6)
    np.testing.assert_allclose(f[3, col["MIN3"]], 8 / 9, rtol=1e-6)
    np.testing.assert_allclose(f[2, col["VMA2"]], 250 / 300, rtol=1e-6)
    assert m[:, col["MA3"]].tolist() == [False, False, True, True]
    assert m[:, col["VMA2"]].tolist() == [False, True, True, False]  # volume[3] == 0


def test_alpha158_matches_pandas_and_masks_holes() -> None:
    p = _panel(days=80, stocks=2)
    feats, _, names = alpha158_subset(**p)
    col = {name: i for i, name in enumerate(names)}
    frame = pd.DataFrame(p["close"])
    for d in (5, 30, 60):
        np.testing.assert_allclose(
            feats[d + 5 :, :, col[f"STD{d}"]],
            (frame.rolling(d).std() / frame).to_numpy()[d + 5 :],
            rtol=1e-5,
        )
        high = pd.DataFrame(p["high"]).rolling(d).max() / frame
        np.testing.assert_allclose(feats[d:, :, col[f"MAX{d}"]], high.to_numpy()[d:], rtol=1e-6)
    p["mask"][40, 0] = False
    p["close"][40, 0] = np.nan
    _, holed, _ = alpha158_subset(**p)
    ma5 = holed[:, 0, col["MA5"]]
    assert not ma5[40:45].any() and ma5[45] and ma5[39]
    _, loose, _ = alpha158_subset(**p, min_fraction=0.8)
    assert loose[41:45, 0, col["MA5"]].all() and not loose[40, 0, col["MA5"]]


def test_zscore_by_hand() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [1.0, 2.0, 3.0, 10.0]])
    m = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = cross_sectional_zscore(x, m, clip=None)
    s = np.sqrt(2 / 3)
    torch.testing.assert_close(z[0], torch.tensor([-1 / s, 0.0, 1 / s, 0.0], dtype=torch.float32))
    robust = cross_sectional_zscore(x, m, robust=True, clip=3.0)
    # Day 1: median 2.5, MAD 1 -> scale 1.4826; 10 gives 5.06, clipped to 3.
    torch.testing.assert_close(
        robust[1], torch.tensor([-1.5 / 1.4826, -0.5 / 1.4826, 0.5 / 1.4826, 3.0])
    )
    lonely = cross_sectional_zscore(torch.tensor([[5.0, 7.0]]), torch.tensor([[True, False]]))
    assert lonely.tolist() == [[0.0, 0.0]]


def test_labels_by_hand() -> None:
    close = np.array([[10.0, 5.0], [11.0, np.nan], [12.1, 5.0], [13.31, 4.0], [12.0, 4.0]])
    mask = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]], dtype=bool)
    label, up, ok = qlib_labels(close, mask)
    torch.testing.assert_close(label[:, 0], torch.tensor([0.1, 0.1, 12 / 13.31 - 1, 0.0, 0.0]))
    assert ok[:, 1].tolist() == [False, True, True, False, False]  # t+1 or t+2 missing
    assert label[1, 1].item() == pytest.approx(-0.2)
    assert up[:, 0].tolist() == [True, True, False, False, False]
    assert not up[1, 1]


def test_shape_mismatch() -> None:
    p = _panel()
    p["volume"] = p["volume"][:-1]
    with pytest.raises(InputError, match="'volume' has shape"):
        alpha158_subset(**p)


def test_zscore_per_feature_on_3d() -> None:
    x = torch.randn(4, 6, 2)
    m = torch.rand(4, 6, 2) > 0.3
    for robust in (False, True):
        both = cross_sectional_zscore(x, m, robust=robust)
        for f in range(2):
            alone = cross_sectional_zscore(x[..., f], m[..., f], robust=robust)
            torch.testing.assert_close(both[..., f], alone)
