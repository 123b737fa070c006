from __future__ import annotations

import numpy as np
import pytest
import torch

from stgraph.errors import InputError
from stgraph.nn.wavelet import WaveletSplit, wavedec

pywt = pytest.importorskip("pywt")


@pytest.mark.filterwarnings("ignore:Level value")  # pywt: boundary effects on short windows
@pytest.mark.parametrize("name", ["db1", "db4", "sym4", "sym2"])
@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("mode", ["zero", "symmetric"])
@pytest.mark.parametrize("steps", [20, 21])
def test_non_causal_split_equals_pywt(name: str, level: int, mode: str, steps: int) -> None:
    x = np.random.default_rng(level + steps).normal(size=(4, steps))
    coeffs = pywt.wavedec(x, name, mode=mode, level=level)
    low = pywt.waverec([coeffs[0]] + [None] * level, name, mode=mode)[:, :steps]
    high = pywt.waverec([None, *coeffs[1:]], name, mode=mode)[:, :steps]
    mine = wavedec(torch.tensor(x), name, level, mode)
    for ours, theirs in zip(mine, coeffs):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)
    split = WaveletSplit(name, level, causal=False, mode=mode, time_dim=-1)
    got_low, got_high = split(torch.tensor(x))
    np.testing.assert_allclose(got_low.numpy(), low, atol=1e-12)
    np.testing.assert_allclose(got_high.numpy(), high, atol=1e-12)
    np.testing.assert_allclose((got_low + got_high).numpy(), x, atol=1e-12)


def test_stockformer_target_window_of_two_days() -> None:
    # Stockformer also splits its 2-day target window (sym2, level 1, zero mode).
    y = np.random.default_rng(1).normal(size=(5, 2))
    ca, cd = pywt.dwt(y, "sym2", mode="zero")
    low, high = WaveletSplit("sym2", 1, causal=False, time_dim=-1)(torch.tensor(y))
    np.testing.assert_allclose(low.numpy(), pywt.idwt(ca, None, "sym2", mode="zero")[:, :2])
    np.testing.assert_allclose(high.numpy(), pywt.idwt(None, cd, "sym2", mode="zero")[:, :2])


def test_shapes_follow_time_dim_and_no_parameters() -> None:
    split = WaveletSplit("sym2", 1, causal=False, time_dim=1)
    x = torch.randn(2, 20, 5, 3)
    low, high = split(x)
    assert low.shape == high.shape == x.shape
    assert list(split.parameters()) == []
    # Stockformer's 2-day target window in zero mode works too.
    low, _ = split(torch.randn(2, 2, 5))
    assert low.shape == (2, 2, 5)


def test_causal_haar_by_hand() -> None:
    x = torch.tensor([[1.0, 3.0, 7.0, 5.0]])
    low, high = WaveletSplit("db1", 1, causal=True, time_dim=-1)(x)
    # g = [1/2, 1/2]; day 0 is padded with itself.
    torch.testing.assert_close(low, torch.tensor([[1.0, 2.0, 5.0, 6.0]]))
    torch.testing.assert_close(high, torch.tensor([[0.0, 1.0, 2.0, -1.0]]))
    low2, _ = WaveletSplit("db1", 2, causal=True, pad="zero", time_dim=-1)(x)
    # Level 1 (zero pad): [0.5, 2, 5, 6]; level 2 averages days t and t-2 of it.
    torch.testing.assert_close(low2, torch.tensor([[0.25, 1.0, 2.75, 4.0]]))


@pytest.mark.parametrize("name", ["db1", "db4", "sym4"])
@pytest.mark.parametrize("level", [1, 2])
def test_causal_outputs_ignore_later_days(name: str, level: int) -> None:
    split = WaveletSplit(name, level, causal=True, time_dim=1)
    x = torch.randn(3, 20, 4, dtype=torch.float64)
    low, high = split(x)
    for t in (0, 7, 18):
        changed = x.clone()
        changed[:, t + 1 :] += torch.randn_like(changed[:, t + 1 :]) * 10
        new_low, new_high = split(changed)
        assert torch.equal(new_low[:, : t + 1], low[:, : t + 1])
        assert torch.equal(new_high[:, : t + 1], high[:, : t + 1])
        assert not torch.equal(new_low[:, t + 1 :], low[:, t + 1 :])
    torch.testing.assert_close(low + high, x)


def test_causal_constant_series_has_no_high_part() -> None:
    x = torch.full((2, 20, 3), 4.5)
    low, high = WaveletSplit("sym4", 2, causal=True)(x)
    torch.testing.assert_close(low, x)
    torch.testing.assert_close(high, torch.zeros_like(x))


def test_non_causal_split_sees_later_days() -> None:
    split = WaveletSplit("sym2", 1, causal=False, time_dim=-1)
    x = torch.randn(1, 20, dtype=torch.float64)
    changed = x.clone()
    changed[0, 10] += 1.0
    assert not torch.equal(split(changed)[0][0, :10], split(x)[0][0, :10])


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="unknown wavelet"):
        WaveletSplit("nope")
    with pytest.raises(InputError, match="not orthogonal"):
        WaveletSplit("bior2.2")
    with pytest.raises(InputError, match="level"):
        WaveletSplit("db1", 0)
    with pytest.raises(InputError, match="too long"):
        WaveletSplit("db4", causal=False, mode="symmetric", time_dim=-1)(torch.randn(1, 3))
