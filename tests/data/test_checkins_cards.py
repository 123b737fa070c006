"""`open_checkins` and the mobility dataset cards, on real data where it is available."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stgraph.data.cards import DatasetCard, load_card
from stgraph.data.checkins import make_sessions, open_checkins
from stgraph.data.checkins import sources as checkin_sources
from stgraph.errors import InputError

SHIPPED = ["foursquare-nyc-stan", "foursquare-nyc-trajgan", "foursquare-nyc-llmmob"]
RAW = ["foursquare-nyc", "foursquare-tky"]


@pytest.mark.parametrize("name", SHIPPED + RAW)
def test_mobility_cards_parse(name):
    card = load_card(name)
    assert card.domain == "mobility" and card.frequency is None
    assert card.title and card.description and card.license and card.citation
    assert {"users", "locations", "events"} <= set(card.expected)
    if name in RAW:
        (source,) = card.files
        assert not source.urls and "dataset_tsmc2014.zip" in source.instructions
    else:
        assert all(f.urls and f.sha256 for f in card.files)
        assert card.options["session"] in ("iso-week", "source")


def test_series_cards_still_need_a_frequency():
    with pytest.raises(InputError, match="frequency is required for traffic data"):
        DatasetCard.from_dict({"name": "x", "format": "tgcn-csv", "files": []})


def test_missing_raw_file_says_where_to_get_it(tmp_path):
    with pytest.raises(InputError) as info:
        open_checkins("foursquare-nyc", data_dir=tmp_path)
    message = str(info.value)
    assert f"needs dataset_TSMC2014_NYC.txt in {tmp_path}" in message
    assert "https://sites.google.com/site/yangdingqi/home/foursquare-dataset" in message
    assert f"Put the file(s) in {tmp_path}" in message


def test_raw_card_reads_a_placed_file(tmp_path, monkeypatch):
    row = (
        "1\tv1\tc1\tCaf\xe9\t40.7\t-74.0\t-240\tTue Apr 03 18:00:09 +0000 2012\n"
        "2\tv1\tc1\tCaf\xe9\t40.7\t-74.0\t-240\tTue Apr 03 19:00:09 +0000 2012\n"
    )
    (tmp_path / "dataset_TSMC2014_NYC.txt").write_bytes(row.encode("latin-1"))
    card = dataclasses.replace(load_card("foursquare-nyc"), expected={"events": 2, "users": 2})
    monkeypatch.setattr(checkin_sources, "load_card", lambda name: card)
    log = open_checkins("foursquare-nyc", data_dir=tmp_path)
    assert log.attrs["dataset"] == "foursquare-nyc" and log.attrs["default_session"] == "iso-week"
    assert list(log.categories) == ["Café"]
    wrong = dataclasses.replace(card, expected={"events": 3, "locations": 1})
    monkeypatch.setattr(checkin_sources, "load_card", lambda name: wrong)
    with pytest.raises(InputError, match=r"expected 3 events, found 2\. The files are a different"):
        open_checkins("foursquare-nyc", data_dir=tmp_path)


def test_file_path_and_wrong_domain(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("user,timestamp,location\n1,2012-04-03 14:00,x\n")
    assert open_checkins(str(path)).num_events == 1
    with pytest.raises(InputError, match="'los-loop' holds traffic series, not check-ins"):
        open_checkins("los-loop")
    with pytest.raises(InputError, match="Unknown dataset 'foursquare-nycc'"):
        open_checkins("foursquare-nycc")


@pytest.mark.real_data
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_counts(shared_data, name):
    card = load_card(name)
    log = open_checkins(name, data_dir=shared_data / "mobility" / name)
    assert (log.num_users, log.num_locations, log.num_events) == (
        card.expected["users"],
        card.expected["locations"],
        card.expected["events"],
    )
    sessions = make_sessions(log)
    counts = sessions.counts()
    assert counts == {**counts, **card.expected["after_preprocessing"]}
    assert sessions.log.attrs["preprocess"]["session"] == card.options["session"]
    split_sessions = sum(counts[f"{s}_sessions"] for s in ("history", "train", "val", "test"))
    assert split_sessions == counts["sessions"]


@pytest.mark.real_data
def test_stan_times_are_relative(shared_data):
    log = open_checkins(
        "foursquare-nyc-stan", data_dir=shared_data / "mobility/foursquare-nyc-stan"
    )
    assert log.attrs["clock"] == "relative" and log.category is None
    minutes = np.load(shared_data / "mobility/foursquare-nyc-stan/NYC.npy")[:, 2]
    span = (log.time.max() - log.time.min()).astype(np.int64) // 60
    assert span == minutes.max() - minutes.min()  # the gaps are real
    assert log.time.min() == np.datetime64("2000-01-03") + np.timedelta64(int(minutes.min()), "m")


@pytest.mark.real_data
def test_trajgan_weekdays_and_sessions(shared_data):
    folder = shared_data / "mobility/foursquare-nyc-trajgan"
    log = open_checkins("foursquare-nyc-trajgan", data_dir=folder)
    assert log.week_only and log.num_categories == 10
    # The train file's first row: tid 127, user 6, day 0 (Monday), 13 h.
    first = np.flatnonzero(log.session == 127)[0]
    assert log.users[log.user[first]] == "6"
    day = log.time[first].astype("datetime64[D]")
    assert (day.astype(np.int64) - 4) % 7 == 0
    assert (log.time[first] - day).astype("timedelta64[h]").astype(int) == 13
    assert len(np.unique(log.session)) == 3079


@pytest.mark.real_data
def test_llmmob_weekday_matches_the_file(shared_data):
    import pandas as pd

    folder = shared_data / "mobility/foursquare-nyc-llmmob"
    log = open_checkins("foursquare-nyc-llmmob", data_dir=folder)
    frame = pd.concat(
        [pd.read_csv(folder / f"foursquare_{s}.csv") for s in ("train", "valid", "test")]
    )
    weekday = (log.time.astype("datetime64[D]").astype(np.int64) - 4) % 7
    assert np.bincount(weekday, minlength=7).tolist() == np.bincount(frame["weekday"]).tolist()
    assert log.attrs["coords"] == "normalised" and np.abs(log.coords).max() <= 1.0
