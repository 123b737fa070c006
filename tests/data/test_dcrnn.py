"""The DCRNN adapter: real sensor-graph pickles, small HDF5 files written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.dcrnn import load_dcrnn
from stgraph.data.cards import DatasetCard
from stgraph.errors import InputError

pytestmark = pytest.mark.real_data


def _card(folder: Path, **options) -> DatasetCard:
    return DatasetCard(
        name="toy-la",
        format="dcrnn-h5",
        files=(),
        frequency="5min",
        null_value="zero",
        target="speed",
        options={"values": "speed.h5", "key": "df", "adjacency": "adj.pkl", **options},
    )


@pytest.fixture(scope="module")
def real_graph(shared_data):
    path = shared_data / "traffic" / "metr-la" / "adj_mx.pkl"
    with open(path, "rb") as handle:
        ids, _, adj = pickle.load(handle, encoding="latin1")
    return path, list(ids), adj


def _frame(ids, steps=24, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.uniform(20, 70, size=(steps, len(ids)))
    values[3, 1] = 0.0  # a missing reading, DCRNN style
    index = pd.date_range("2012-03-01", periods=steps, freq="5min")
    return pd.DataFrame(values, index=index, columns=ids)


def _small_graph(folder: Path, ids, adj, keep: int = 10) -> None:
    """A 10-sensor pickle in the real DCRNN layout, cut from the real one."""
    sub = ids[:keep]
    with open(folder / "adj.pkl", "wb") as handle:
        pickle.dump((sub, {s: i for i, s in enumerate(sub)}, adj[:keep, :keep]), handle, protocol=2)


def test_real_pickle_full_graph(tmp_path, real_graph):
    path, ids, adj = real_graph
    _frame(ids, steps=12).to_hdf(tmp_path / "speed.h5", key="df")
    raw = load_dcrnn(_card(tmp_path, adjacency=str(path)), tmp_path)
    assert raw.series.values.shape == (12, 207, 1)
    assert raw.series.node_ids[0] == "773869"
    np.testing.assert_array_equal(raw.adjacency, adj)
    assert not raw.series.mask[3, 1, 0] and raw.series.mask[3, 0, 0]


def test_locations_and_reordering(tmp_path, real_graph, shared_data):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    shuffled = ids[:10][::-1]
    frame = _frame(ids[:10])[shuffled]
    frame.to_hdf(tmp_path / "speed.h5", key="df")
    locations = shared_data / "traffic" / "metr-la" / "graph_sensor_locations.csv"
    raw = load_dcrnn(_card(tmp_path, locations=str(locations)), tmp_path)
    assert raw.series.node_ids == tuple(shuffled)
    order = [ids.index(s) for s in shuffled]
    np.testing.assert_array_equal(raw.adjacency, adj[np.ix_(order, order)])
    np.testing.assert_allclose(raw.series.values[:, :, 0], frame.to_numpy(), rtol=1e-6)
    assert raw.series.coords[-1].tolist() == pytest.approx([34.15497, -118.31829])


def test_distances_with_and_without_header(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    _frame(ids[:10]).to_hdf(tmp_path / "speed.h5", key="df")
    (tmp_path / "d.csv").write_text(f"from,to,cost\n{ids[0]},{ids[1]},120.5\n999,{ids[1]},7\n")
    (tmp_path / "d2.csv").write_text(f"{ids[0]},{ids[1]},120.5\n")
    for name in ("d.csv", "d2.csv"):
        raw = load_dcrnn(_card(tmp_path, distances=name), tmp_path)
        assert raw.distances[0, 1] == pytest.approx(120.5)
        assert np.isinf(raw.distances[1, 0]) and raw.distances[2, 2] == 0


def test_sensor_ids_disagree(tmp_path, real_graph):
    path, ids, _ = real_graph
    frame = _frame([*ids[:9], "123456"])
    frame.to_hdf(tmp_path / "speed.h5", key="df")
    with pytest.raises(InputError) as info:
        load_dcrnn(_card(tmp_path, adjacency=str(path)), tmp_path)
    message = str(info.value)
    assert "speed.h5" in message and "adj_mx.pkl" in message
    assert "Only in the data: 123456" in message and "disagree" in message


def test_truncated_h5(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    _frame(ids[:10], steps=500).to_hdf(tmp_path / "speed.h5", key="df")
    data = (tmp_path / "speed.h5").read_bytes()
    (tmp_path / "speed.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"speed\.h5 cannot be read; it is truncated, corrupt"):
        load_dcrnn(_card(tmp_path), tmp_path)


def test_not_h5_missing_and_empty(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    with pytest.raises(InputError, match=r"speed\.h5 does not exist"):
        load_dcrnn(_card(tmp_path), tmp_path)
    (tmp_path / "speed.h5").write_bytes(b"")
    with pytest.raises(InputError, match=r"speed\.h5 is empty"):
        load_dcrnn(_card(tmp_path), tmp_path)
    (tmp_path / "speed.h5").write_text("<html>Google Drive</html>")
    with pytest.raises(InputError, match=r"speed\.h5 cannot be read"):
        load_dcrnn(_card(tmp_path), tmp_path)


def test_wrong_key(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    _frame(ids[:10]).to_hdf(tmp_path / "speed.h5", key="speed")
    with pytest.raises(InputError, match=r"speed\.h5 has no key 'df' \(keys: \['speed'\]\)"):
        load_dcrnn(_card(tmp_path), tmp_path)
    card = _card(tmp_path)
    card.options.pop("key")  # no key: the file's only table is read
    assert load_dcrnn(card, tmp_path).series.num_nodes == 10


def test_duplicate_and_unsorted_timestamps(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    frame = _frame(ids[:10])
    index = frame.index.tolist()
    index[5] = index[4]
    frame.index = pd.DatetimeIndex(index)
    frame.to_hdf(tmp_path / "speed.h5", key="df")
    with pytest.raises(InputError, match=r"speed\.h5: duplicate timestamp 2012-03-01 00:20:00"):
        load_dcrnn(_card(tmp_path), tmp_path)
    frame = _frame(ids[:10]).iloc[[0, 2, 1, 3]]
    frame.to_hdf(tmp_path / "speed.h5", key="df")
    with pytest.raises(InputError, match=r"speed\.h5: out-of-order timestamp"):
        load_dcrnn(_card(tmp_path), tmp_path)


def test_gap_inserted_as_masked_rows(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    _frame(ids[:10]).drop(index=pd.Timestamp("2012-03-01 00:10")).to_hdf(
        tmp_path / "speed.h5", key="df"
    )
    series = load_dcrnn(_card(tmp_path), tmp_path).series
    assert series.num_steps == 24 and not series.mask[2].any()
    assert series.attrs["inserted_steps"] == 1


def test_nan_when_card_declares_zero(tmp_path, real_graph):
    _, ids, adj = real_graph
    _small_graph(tmp_path, ids, adj)
    frame = _frame(ids[:10])
    frame.iloc[2, 2] = np.inf
    frame.to_hdf(tmp_path / "speed.h5", key="df")
    with pytest.raises(InputError, match=r"speed\.h5: 1 NaN/inf value"):
        load_dcrnn(_card(tmp_path), tmp_path)


def test_corrupt_pickle(tmp_path, real_graph):
    _, ids, _ = real_graph
    _frame(ids[:10]).to_hdf(tmp_path / "speed.h5", key="df")
    (tmp_path / "adj.pkl").write_bytes(b"\x80\x02(garbage")
    with pytest.raises(InputError, match=r"adj\.pkl is not a readable pickle"):
        load_dcrnn(_card(tmp_path), tmp_path)
