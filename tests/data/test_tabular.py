"""Bring-your-own-data tables (wide/long CSV and Parquet) and graph files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.tabular import open_file_dataset
from stgraph.errors import InputError

WIDE = "timestamp,a,b,c\n2024-01-01 00:00,1,2,3\n2024-01-01 00:15,4,,6\n2024-01-01 00:30,7,8,9\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_wide_csv_infers_frequency(tmp_path):
    raw = open_file_dataset(_write(tmp_path, "wide.csv", WIDE))
    series = raw.series
    assert series.values.shape == (3, 3, 1)
    assert series.node_ids == ("a", "b", "c")
    assert series.freq == pd.Timedelta("15min")
    assert not series.mask[1, 1, 0] and series.values[1, 1, 0] == 0
    assert raw.card.format == "tabular" and raw.card.graph == {"method": "none"}
    assert raw.adjacency is None


def test_long_csv_matches_wide(tmp_path):
    text = "time,node,value\n" + "".join(
        f"2024-01-01 00:{m:02d},{n},{v}\n"
        for m, row in zip((0, 15, 30), ((1, 2, 3), (4, None, 6), (7, 8, 9)))
        for n, v in zip("abc", row)
        if v is not None
    )
    long = open_file_dataset(_write(tmp_path, "long.csv", text)).series
    wide = open_file_dataset(_write(tmp_path, "wide.csv", WIDE)).series
    np.testing.assert_array_equal(long.values, wide.values)
    np.testing.assert_array_equal(long.mask, wide.mask)
    assert long.node_ids == wide.node_ids


def test_parquet_and_truncated_parquet(tmp_path):
    frame = pd.read_csv(_write(tmp_path, "wide.csv", WIDE), parse_dates=["timestamp"])
    frame.to_parquet(tmp_path / "wide.parquet")
    assert open_file_dataset(tmp_path / "wide.parquet").series.num_nodes == 3
    data = (tmp_path / "wide.parquet").read_bytes()
    (tmp_path / "wide.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"wide\.parquet is not a readable Parquet file"):
        open_file_dataset(tmp_path / "wide.parquet")


def test_gap_is_inserted_as_masked_row(tmp_path):
    text = "date,x\n2024-01-01,1\n2024-01-02,2\n2024-01-04,4\n2024-01-05,5\n"
    series = open_file_dataset(_write(tmp_path, "gap.csv", text)).series
    assert series.num_steps == 5 and series.freq == pd.Timedelta("1D")
    assert series.mask[:, 0, 0].tolist() == [True, True, False, True, True]


def test_freq_override_and_off_grid(tmp_path):
    path = _write(tmp_path, "wide.csv", WIDE)
    assert open_file_dataset(path, freq="5min").series.num_steps == 7
    with pytest.raises(
        InputError, match=r"wide\.csv: timestamp 2024-01-01 00:15:00 is not on the 10min grid"
    ):
        open_file_dataset(path, freq="10min")


def test_duplicate_timestamp(tmp_path):
    text = "timestamp,a\n2024-01-01 00:00,1\n2024-01-01 00:15,2\n2024-01-01 00:15,3\n"
    with pytest.raises(
        InputError, match=r"dup\.csv: duplicate timestamp 2024-01-01 00:15:00 at line 4"
    ):
        open_file_dataset(_write(tmp_path, "dup.csv", text), freq="15min")


def test_unsorted_timestamp(tmp_path):
    text = "timestamp,a\n2024-01-01 00:30,1\n2024-01-01 00:15,2\n2024-01-01 00:45,3\n"
    with pytest.raises(InputError, match=r"unsorted\.csv: out-of-order timestamp .* at line 3"):
        open_file_dataset(_write(tmp_path, "unsorted.csv", text), freq="15min")


def test_long_duplicate_pair(tmp_path):
    text = "timestamp,node,value\n2024-01-01,a,1\n2024-01-01,a,2\n2024-01-02,a,3\n"
    with pytest.raises(InputError, match=r"long\.csv: duplicate reading for node 'a'.*line 3"):
        open_file_dataset(_write(tmp_path, "long.csv", text))


def test_non_numeric_and_ragged(tmp_path):
    bad = WIDE.replace(",8,", ",eight,")
    with pytest.raises(
        InputError, match=r"bad\.csv: non-numeric value 'eight' in column 'b' at line 4"
    ):
        open_file_dataset(_write(tmp_path, "bad.csv", bad))
    ragged = WIDE + "2024-01-01 00:45,1,2,3,4\n"
    with pytest.raises(InputError, match=r"ragged\.csv is not a well-formed CSV"):
        open_file_dataset(_write(tmp_path, "ragged.csv", ragged))


def test_empty_missing_and_no_time_column(tmp_path):
    with pytest.raises(InputError, match=r"empty\.csv is empty"):
        open_file_dataset(_write(tmp_path, "empty.csv", ""))
    with pytest.raises(InputError, match=r"nowhere\.csv does not exist"):
        open_file_dataset(tmp_path / "nowhere.csv")
    with pytest.raises(InputError, match=r"notime\.csv: found no timestamp column"):
        open_file_dataset(_write(tmp_path, "notime.csv", "a,b\n1,2\n3,4\n"))


def test_null_value_rules(tmp_path):
    path = _write(tmp_path, "nulls.csv", WIDE.replace(",1,2,3", ",0,2,3"))
    nan_rule = open_file_dataset(path, null_value="nan").series
    assert nan_rule.mask[0, 0, 0] and not nan_rule.mask[1, 1, 0]
    # An empty cell is NaN: a missing reading only under the "nan" rule.
    for rule in ("zero", "none"):
        with pytest.raises(InputError, match=r"nulls\.csv: 1 NaN/inf value"):
            open_file_dataset(path, null_value=rule)
    filled = _write(tmp_path, "filled.csv", WIDE.replace(",1,2,3", ",0,2,3").replace(",,", ",5,"))
    assert not open_file_dataset(filled, null_value="zero").series.mask[0, 0, 0]
    assert open_file_dataset(filled, null_value="none").series.mask.all()


def test_edge_list_graphs(tmp_path):
    data = _write(tmp_path, "wide.csv", WIDE)
    weights = _write(tmp_path, "w.csv", "from,to,weight\na,b,0.5\nc,a,1\n")
    raw = open_file_dataset(data, graph=weights)
    assert raw.card.graph == {"method": "adjacency"}
    assert raw.adjacency[0, 1] == 0.5 and raw.adjacency[2, 0] == 1 and raw.adjacency[1, 0] == 0
    costs = _write(tmp_path, "c.csv", "from,to,cost\na,b,300\n")
    raw = open_file_dataset(data, graph=costs)
    assert raw.distances[0, 1] == 300 and np.isinf(raw.distances[1, 0]) and raw.distances[2, 2] == 0
    assert raw.adjacency[0, 1] == 1
    unknown = _write(tmp_path, "u.csv", "from,to,weight\na,zz,1\n")
    with pytest.raises(
        InputError, match=r"u\.csv names node\(s\) that are not columns of .*wide\.csv: \['zz'\]"
    ):
        open_file_dataset(data, graph=unknown)


def test_matrix_graphs(tmp_path):
    data = _write(tmp_path, "wide.csv", WIDE)
    plain = _write(tmp_path, "m.csv", "0,1,0\n1,0,2\n0,2,0\n")
    assert open_file_dataset(data, graph=plain).adjacency[1, 2] == 2
    headed = _write(tmp_path, "h.csv", "c,b,a\n0,5,0\n5,0,0\n0,0,0\n")
    adjacency = open_file_dataset(data, graph=headed).adjacency
    assert adjacency[2, 1] == 5 and adjacency[1, 2] == 5 and adjacency[0, 1] == 0
    wrong = _write(tmp_path, "wrong.csv", "0,1\n1,0\n")
    with pytest.raises(
        InputError, match=r"wrong\.csv: adjacency matrix is 2x2, but .*wide\.csv has 3 nodes"
    ):
        open_file_dataset(data, graph=wrong)
    other = _write(tmp_path, "other.csv", "a,b,z\n0,1,0\n1,0,0\n0,0,0\n")
    with pytest.raises(InputError, match=r"other\.csv: header node ids disagree"):
        open_file_dataset(data, graph=other)
