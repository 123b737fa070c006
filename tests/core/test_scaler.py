import numpy as np
import torch

from stgraph.data.scaler import StandardScaler


def test_fit_uses_observed_entries_only():
    values = np.array([[[1.0], [3.0]], [[0.0], [100.0]]], dtype=np.float32)
    mask = np.array([[[True], [True]], [[False], [False]]])
    scaler = StandardScaler.fit(values, mask)
    assert scaler.mean.tolist() == [2.0] and scaler.std.tolist() == [1.0]


def test_round_trip_and_state():
    rng = np.random.default_rng(0)
    values = rng.normal(5, 3, size=(50, 4, 2)).astype(np.float32)
    scaler = StandardScaler.fit(values, np.ones_like(values, dtype=bool))
    x = torch.from_numpy(values)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(x)).numpy(), values, atol=1e-5)
    again = StandardScaler.from_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(again.mean, scaler.mean)
    assert abs(float(scaler.transform(x)[..., 0].mean())) < 1e-5


def test_chunked_fit_matches_numpy_on_observed_entries():
    rng = np.random.default_rng(1)
    values = rng.normal(60, 8, size=(1000, 7, 2)).astype(np.float32)
    mask = rng.random(values.shape) > 0.2
    scaler = StandardScaler.fit(values, mask, chunk=97)
    for channel in range(2):
        observed = values[..., channel][mask[..., channel]].astype(np.float64)
        assert scaler.mean[channel] == np.float32(observed.mean())
        np.testing.assert_allclose(scaler.std[channel], observed.std(), rtol=1e-6)
