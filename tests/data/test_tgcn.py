"""The T-GCN CSV adapter on the real LOS-LOOP files and on small broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.tgcn import load_tgcn
from stgraph.data.cards import DatasetCard, load_card
from stgraph.errors import InputError


def _card(**changes) -> DatasetCard:
    fields = dict(
        name="toy",
        format="tgcn-csv",
        files=(),
        frequency="5min",
        start="2020-01-01 00:00",
        null_value="zero",
        options={"values": "speed.csv", "adjacency": "adj.csv"},
    )
    fields.update(changes)
    return DatasetCard(**fields)


def _write(folder: Path, speed: str, adj: str = "0,1,1\n1,0,0\n1,0,0\n") -> Path:
    (folder / "speed.csv").write_text(speed)
    (folder / "adj.csv").write_text(adj)
    return folder


@pytest.mark.real_data
def test_real_los_loop(shared_data):
    folder = shared_data / "traffic" / "los-loop"
    raw = load_tgcn(load_card("los-loop"), folder)
    series = raw.series
    assert series.values.shape == (2016, 207, 1)
    assert series.timestamps[0] == pd.Timestamp("2012-03-01 00:00")
    assert series.timestamps[-1] == pd.Timestamp("2012-03-07 23:55")
    assert series.node_ids[0] == "773869"
    assert series.channels == ("speed",)
    cells = pd.read_csv(folder / "los_speed.csv").to_numpy(dtype=np.float32)
    observed = series.mask[:, :, 0]
    np.testing.assert_array_equal(series.values[:, :, 0][observed], cells[observed])
    assert (cells[~observed] == 0).all()
    assert raw.adjacency.shape == (207, 207)
    shipped = np.loadtxt(folder / "los_adj.csv", delimiter=",").astype(np.float32)
    np.testing.assert_array_equal(raw.adjacency, shipped)


def test_small_file_and_zero_is_missing(tmp_path):
    _write(tmp_path, "a,b,c\n1,2,0\n4,5,6\n")
    series = load_tgcn(_card(), tmp_path).series
    assert series.values.shape == (2, 3, 1)
    assert series.timestamps[1] == pd.Timestamp("2020-01-01 00:05")
    assert not series.mask[0, 2, 0] and series.mask[1, 2, 0]


def test_adjacency_size_mismatch(tmp_path):
    _write(tmp_path, "a,b,c,d\n1,2,3,4\n", adj="0,1\n1,0\n")
    with pytest.raises(InputError, match=r"adj\.csv is 2x2.*speed\.csv has 4 node columns"):
        load_tgcn(_card(), tmp_path)


def test_non_numeric_cell(tmp_path):
    _write(tmp_path, "a,b,c\n1,2,3\n4,fast,6\n")
    with pytest.raises(
        InputError, match=r"speed\.csv: non-numeric value 'fast' in column 'b' at line 3"
    ):
        load_tgcn(_card(), tmp_path)


def test_ragged_rows(tmp_path):
    _write(tmp_path, "a,b,c\n1,2,3\n4,5,6,7\n")
    with pytest.raises(InputError, match=r"speed\.csv is not a well-formed CSV"):
        load_tgcn(_card(), tmp_path)


def test_empty_and_missing_files(tmp_path):
    _write(tmp_path, "")
    with pytest.raises(InputError, match=r"speed\.csv is empty"):
        load_tgcn(_card(), tmp_path)
    (tmp_path / "speed.csv").unlink()
    with pytest.raises(InputError, match=r"speed\.csv does not exist"):
        load_tgcn(_card(), tmp_path)


def test_nan_when_card_declares_zero(tmp_path):
    _write(tmp_path, "a,b,c\n1,2,3\n4,NaN,6\n")
    with pytest.raises(InputError, match=r"speed\.csv: 1 NaN/inf value"):
        load_tgcn(_card(), tmp_path)


def test_card_without_start(tmp_path):
    _write(tmp_path, "a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="needs 'start'"):
        load_tgcn(_card(start=None), tmp_path)
