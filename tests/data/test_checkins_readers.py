"""Check-in readers: raw TSMC2014, STAN, TrajGAN, LLM-Mob and the user's long table, with the
errors each gives for bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgraph.data.checkins import (
    read_checkin_table,
    read_llmmob,
    read_stan,
    read_trajgan,
    read_tsmc2014,
)
from stgraph.errors import InputError

TSMC_ROWS = [
    "470\t49bbd6c0f964a520f4531fe3\t4bf58dd8d48988d127951735\tArts & Crafts Store\t"
    "40.719810375488535\t-74.00258103213994\t-240\tTue Apr 03 18:00:09 +0000 2012",
    "979\t4a43c0aef964a520c6a61fe3\t4bf58dd8d48988d1df941735\tBridge\t40.60679958140643\t"
    "-74.04416981025437\t-240\tTue Apr 03 18:00:25 +0000 2012",
    "69\t4c5cc7b485a1e21e00d35711\t4bf58dd8d48988d103941735\tHome (private)\t"
    "40.716161684843215\t-73.88307005845945\t-240\tTue Apr 03 18:02:24 +0000 2012",
    # 02:30 UTC on Wednesday is 22:30 on Tuesday in New York (UTC-4 in April).
    "470\t4b5b981bf964a520900929e3\t4bf58dd8d48988d1e0931735\tCaf\xe9\t40.69042711809854\t"
    "-73.95468677509598\t-240\tWed Apr 04 02:30:00 +0000 2012",
    # After the end of daylight saving time (UTC-5); the bridge reported elsewhere this time.
    "979\t4a43c0aef964a520c6a61fe3\t4bf58dd8d48988d1df941735\tBridge\t40.6068\t-74.0442\t-300\t"
    "Sun Nov 04 07:30:00 +0000 2012",
]


def _tsmc(tmp_path, rows, name="dataset_TSMC2014_NYC.txt"):
    path = tmp_path / name
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    return path


def test_tsmc2014_local_time_categories_and_coords(tmp_path):
    log = read_tsmc2014(_tsmc(tmp_path, TSMC_ROWS))
    assert list(log.users) == ["470", "69", "979"]  # string ids, sorted as text
    assert log.user.tolist() == [0, 0, 1, 2, 2]
    expected = [
        "2012-04-03T14:00:09",
        "2012-04-03T22:30:00",
        "2012-04-03T14:02:24",
        "2012-04-03T14:00:25",
        "2012-11-04T02:30:00",
    ]
    assert log.time.tolist() == np.array(expected, dtype="datetime64[s]").tolist()
    assert log.utc_offset_minutes.tolist() == [-240, -240, -240, -240, -300]
    utc = log.time - log.utc_offset_minutes.astype("timedelta64[m]")
    assert utc[1] == np.datetime64("2012-04-04T02:30:00")
    assert list(log.categories) == ["Arts & Crafts Store", "Bridge", "Café", "Home (private)"]
    assert [log.categories[c] for c in log.category] == [
        "Arts & Crafts Store",
        "Café",
        "Home (private)",
        "Bridge",
        "Bridge",
    ]
    bridge = list(log.locations).index("4a43c0aef964a520c6a61fe3")
    np.testing.assert_allclose(log.coords[bridge], [40.60679958140643, -74.04416981025437])
    assert log.attrs["locations_with_several_coords"] == 1
    assert log.attrs["clock"] == "local" and log.num_locations == 4 and not log.week_only


def test_tsmc2014_not_the_format(tmp_path):
    comma = tmp_path / "comma.txt"
    comma.write_text("470,49bb,4bf5,Bridge,40.7,-74.0,-240,Tue Apr 03 18:00:09 +0000 2012\n")
    with pytest.raises(
        InputError, match=r"comma\.txt: line 1 has 1 tab-separated field\(s\), not 8"
    ):
        read_tsmc2014(comma)
    extra = _tsmc(tmp_path, [*TSMC_ROWS[:2], TSMC_ROWS[2] + "\tsurplus"], "extra.txt")
    with pytest.raises(
        InputError, match=r"extra\.txt: not a TSMC2014 .*Expected 8 fields in line 3"
    ):
        read_tsmc2014(extra)


def test_tsmc2014_bad_timestamp_and_coordinates(tmp_path):
    bad = TSMC_ROWS[1].replace("Tue Apr 03 18:00:25", "2012-04-03 18:00:25")
    path = _tsmc(tmp_path, [TSMC_ROWS[0], bad], "time.txt")
    with pytest.raises(InputError) as info:
        read_tsmc2014(path)
    message = str(info.value)
    assert str(path) in message and "unparseable utcTimestamp" in message
    assert "line 2: '2012-04-03 18:00:25 +0000 2012'" in message
    nan = TSMC_ROWS[1].replace("40.60679958140643", "nan")
    with pytest.raises(InputError, match=r"coords\.txt: non-finite latitude at line 2"):
        read_tsmc2014(_tsmc(tmp_path, [TSMC_ROWS[0], nan], "coords.txt"))


def test_stan_relative_minutes(tmp_path):
    checkins, pois = tmp_path / "NYC.npy", tmp_path / "NYC_POI.npy"
    # Not sorted within user 1; user 2 has two check-ins in the same minute.
    np.save(checkins, np.array([[1, 7, 1500], [1, 3, 60], [2, 7, 10], [2, 3, 10]], np.int32))
    np.save(pois, np.array([[3, 40.7, -74.0], [7, 40.8, -73.9]]))
    log = read_stan(checkins, pois)
    assert log.user.tolist() == [0, 0, 1, 1]
    assert list(log.locations) == ["3", "7"] and log.location.tolist() == [0, 1, 1, 0]
    assert log.time.tolist()[:2] == [
        np.datetime64("2000-01-03T01:00").astype("datetime64[s]").tolist(),
        np.datetime64("2000-01-04T01:00").astype("datetime64[s]").tolist(),
    ]
    np.testing.assert_allclose(log.coords, [[40.7, -74.0], [40.8, -73.9]])
    assert log.attrs["clock"] == "relative" and log.category is None
    np.save(pois, np.array([[3, 40.7, -74.0]]))
    with pytest.raises(InputError, match=r"NYC\.npy: POI id without coordinates .* row 0: 7"):
        read_stan(checkins, pois)
    np.save(checkins, np.zeros((3, 4), np.int32))
    with pytest.raises(InputError, match=r"shape \[N, 3\], got shape \[3, 4\]"):
        read_stan(checkins, pois)


TRAJGAN_HEADER = "tid,label,lat,lon,day,hour,category\n"


def test_trajgan_weeks_and_file_order(tmp_path):
    train, test = tmp_path / "train_latlon.csv", tmp_path / "test_latlon.csv"
    train.write_text(
        TRAJGAN_HEADER + "12,6,40.1,-73.1,0,13,0\n12,6,40.2,-73.2,0,13,1\n12,6,40.1,-73.1,6,23,0\n"
    )
    test.write_text(TRAJGAN_HEADER + "10,6,40.3,-73.3,2,8,4\n10,6,40.1,-73.1,3,9,0\n")
    log = read_trajgan([train, test])
    # tid 10 is the user's first week (1970-01-05), tid 12 the second (1970-01-12).
    assert log.session.tolist() == [10, 10, 12, 12, 12]
    times = np.array(
        [
            "1970-01-07T08:00",
            "1970-01-08T09:00",
            "1970-01-12T13:00",
            "1970-01-12T13:00",
            "1970-01-18T23:00",
        ],
        dtype="datetime64[s]",
    )
    np.testing.assert_array_equal(log.time, times)
    # The tied pair keeps the file's order: (40.1, -73.1) before (40.2, -73.2).
    assert [log.locations[i] for i in log.location[2:4]] == ["40.1,-73.1", "40.2,-73.2"]
    assert log.num_locations == 3 and log.week_only and list(log.categories) == ["0", "1", "4"]
    assert log.attrs["source_split"] == {"test_latlon.csv": 1, "train_latlon.csv": 1}
    test.write_text(TRAJGAN_HEADER + "10,6,40.3,-73.3,7,8,4\n")
    with pytest.raises(
        InputError, match=r"test_latlon\.csv: column 'day' outside 0\.\.6 at line 2"
    ):
        read_trajgan([train, test])
    test.write_text("tid,label,lat,lon,hour,category\n10,6,40.3,-73.3,8,4\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['day'\]"):
        read_trajgan([train, test])


LLMMOB_HEADER = "id,user_id,location_id,latitude,longitude,start_day,start_min,weekday\n"


def test_llmmob_real_weekday_and_relative_days(tmp_path):
    train, test = tmp_path / "foursquare_train.csv", tmp_path / "foursquare_test.csv"
    train.write_text(
        LLMMOB_HEADER + "1,5,2,0.5,-0.5,0,1088,1\n2,5,3,0.1,0.2,4,825,5\n3,8,2,0.4,-0.4,2,60,6\n"
    )
    test.write_text(LLMMOB_HEADER + "4,5,2,0.5,-0.5,8,0,2\n")
    log = read_llmmob([train, test])
    # User 5's day 0 is a Tuesday (weekday 1): 1970-01-06; user 8's day 2 is a Sunday.
    times = np.array(
        ["1970-01-06T18:08", "1970-01-10T13:45", "1970-01-14T00:00", "1970-01-11T01:00"],
        dtype="datetime64[s]",
    )
    np.testing.assert_array_equal(log.time, times)
    weekday = (log.time.astype("datetime64[D]").astype(np.int64) - 4) % 7
    assert weekday.tolist() == [1, 5, 2, 6]
    np.testing.assert_allclose(log.coords[0], [0.5, -0.5])  # location "2": first seen
    assert log.attrs["coords"] == "normalised" and log.attrs["dates"] == "relative"
    assert log.attrs["locations_with_several_coords"] == 1
    test.write_text(LLMMOB_HEADER + "4,5,2,0.5,-0.5,8,0,3\n")
    with pytest.raises(InputError, match="for user 5, weekday does not advance with start_day"):
        read_llmmob([train, test])
    test.write_text(LLMMOB_HEADER + "4,5,2,1.5,-0.5,8,0,2\n")
    with pytest.raises(InputError, match=r"latitude outside \[-1, 1\] at line 2: 1\.5"):
        read_llmmob([train, test])


def test_table_offsets_and_case(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "User,TIMESTAMP,Location,category\n"
        "a,2012-04-03 14:00:09-04:00,v1,Café\n"
        "a,2012-04-04T08:00:00+09:00,v2,Bar\n"
        "b,2012-04-04 01:00:00Z,v1,Café\n"
    )
    log = read_checkin_table(path)
    expected = ["2012-04-03T14:00:09", "2012-04-04T08:00:00", "2012-04-04T01:00:00"]
    np.testing.assert_array_equal(log.time, np.array(expected, dtype="datetime64[s]"))
    assert log.utc_offset_minutes.tolist() == [-240, 540, 0]
    assert log.coords is None and list(log.categories) == ["Bar", "Café"]


def test_table_naive_times_and_parquet(tmp_path):
    naive = tmp_path / "naive.csv"
    naive.write_text("user,timestamp,location,lat,lon\n1,2012-04-03 14:00,x,40.7,-74.0\n")
    log = read_checkin_table(naive)
    assert log.utc_offset_minutes is None and log.time[0] == np.datetime64("2012-04-03T14:00")
    stamps = pd.to_datetime(["2012-07-01 12:00", "2012-12-01 12:00"]).tz_localize(
        "America/New_York"
    )
    frame = pd.DataFrame({"user": [1, 1], "timestamp": stamps, "location": ["x", "y"]})
    frame.to_parquet(tmp_path / "zoned.parquet")
    log = read_checkin_table(tmp_path / "zoned.parquet")
    assert log.utc_offset_minutes.tolist() == [-240, -300]
    assert log.time[1] == np.datetime64("2012-12-01T12:00")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "user,location\na,x\n",
            r"needs the columns \['user', 'timestamp', 'location'\].*"
            r"missing \['timestamp'\]",
        ),
        (
            "user,timestamp,location\na,2012-04-03 14:00,x\na,yesterday,x\n",
            r"bad\.csv: unparseable timestamp .* at line 3: 'yesterday'",
        ),
        (
            "user,timestamp,location\na,2012-04-03 14:00-04:00,x\na,2012-04-03 15:00,x\n",
            r"timestamp without a UTC offset .* line 3",
        ),
        (
            "user,timestamp,location,lat,lon\na,2012-04-03 14:00,x,40.7,inf\n",
            r"bad\.csv: non-finite longitude at line 2",
        ),
        (
            "user,timestamp,location,lat,lon\na,2012-04-03 14:00,x,north,-74\n",
            r"column 'lat' is not a number at line 2: 'north'",
        ),
    ],
)
def test_table_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_checkin_table(path)
