"""`open_dataset`: card names, file paths, data-dir resolution and the card's expected shape."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from stgraph.data import sources
from stgraph.data.cards import load_card
from stgraph.data.paths import cache_dir, resolve_data_dir
from stgraph.data.sources import open_dataset
from stgraph.errors import InputError


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert resolve_data_dir("metr-la") == tmp_path / "cache" / "datasets" / "metr-la"
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(tmp_path / "shared"))
    assert resolve_data_dir("metr-la") == tmp_path / "shared" / "metr-la"
    assert resolve_data_dir("metr-la", tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.parametrize("name", ["los-loop", "metr-la", "pems-bay"])
def test_shipped_cards_parse(name):
    card = load_card(name)
    assert card.expected["nodes"] in (207, 325)
    assert all(f.urls for f in card.files)
    assert card.graph == {"method": "adjacency"}


@pytest.mark.real_data
def test_los_loop_by_name(shared_data):
    raw = open_dataset("los-loop", data_dir=shared_data / "traffic" / "los-loop")
    assert raw.series.values.shape == (2016, 207, 1)


@pytest.mark.real_data
def test_los_loop_via_env(shared_data, monkeypatch):
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(shared_data / "traffic"))
    assert open_dataset("los-loop").series.num_nodes == 207


def test_missing_files_message():
    with pytest.raises(InputError) as info:
        open_dataset("los-loop")
    message = str(info.value)
    assert "Dataset 'los-loop' needs these files in " in message
    assert "datasets/los-loop: los_speed.csv (from https://raw.githubusercontent.com/" in message
    assert "los_adj.csv" in message and "stgraph data download los-loop" in message


def test_unknown_name():
    with pytest.raises(InputError, match=r"Unknown dataset 'metr-lax'\. Did you mean 'metr-la'"):
        open_dataset("metr-lax")


@pytest.mark.real_data
def test_expected_shape_mismatch(tmp_path, shared_data, monkeypatch):
    for name in ("los_speed.csv", "los_adj.csv"):
        shutil.copy(shared_data / "traffic" / "los-loop" / name, tmp_path / name)
    card = load_card("los-loop")
    changed = dataclasses.replace(card, expected={"nodes": 200, "steps": 2016})
    monkeypatch.setattr(sources, "load_card", lambda name: changed)
    with pytest.raises(InputError) as info:
        open_dataset("los-loop", data_dir=tmp_path)
    message = str(info.value)
    assert "expected 200 nodes, found 207" in message and "los_speed.csv" in message


def test_corrupted_download_sha(tmp_path):
    (tmp_path / "los_speed.csv").write_text("a,b\n1,2\n")
    (tmp_path / "los_adj.csv").write_text("0,1\n1,0\n")
    with pytest.raises(InputError, match=r"los_speed\.csv does not match the sha256"):
        open_dataset("los-loop", data_dir=tmp_path)


def test_file_path_spec(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("timestamp,a,b\n2024-01-01 00:00,1,0\n2024-01-01 01:00,2,3\n")
    raw = open_dataset(str(path), null_value="zero")
    assert raw.series.num_nodes == 2 and not raw.series.mask[0, 1, 0]
    assert raw.card.frequency in ("h", "60min", "1h")
    with pytest.raises(InputError, match=r"gone\.csv does not exist"):
        open_dataset(str(tmp_path / "gone.csv"))
    with pytest.raises(InputError, match="apply to your own data files only"):
        open_dataset("los-loop", freq="5min")


def test_a_checkin_card_is_not_a_series():
    with pytest.raises(InputError, match="holds check-ins, not a time series.*next-location"):
        open_dataset("foursquare-nyc-trajgan")
