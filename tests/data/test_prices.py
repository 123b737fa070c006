"""Price panels: trading calendar, adjustment, masking, messy layouts, bad input, real cards."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stgraph.data.adapters.price_files import parse_dates
from stgraph.data.adapters.prices import load_price_folder, load_price_long
from stgraph.data.cards import DatasetCard
from stgraph.data.series import Series, trading_day_features
from stgraph.data.sources import open_dataset
from stgraph.errors import InputError

AAA = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-05,12,13,11,12,6,100
1/3/2024,10,11,9,10,5,200
2024-01-02,8,9,7,8,8,300
"""
BBB = """Date,Open,High,Low,Close,Volume
2024-01-02,20,21,19,20,1000
2024-01-04,22,,21,22,0
2024-01-05,23,24,22,23,1500
"""


def _card(fmt: str = "price-folder", **options) -> DatasetCard:
    return DatasetCard.from_dict(
        {"name": "tiny", "format": fmt, "domain": "finance", "target": "close", "options": options}
    )


def _folder(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _load(tmp_path, files: dict[str, str], **options) -> Series:
    return load_price_folder(_card(**options), _folder(tmp_path, files)).series


def test_union_calendar_adjustment_and_masking(tmp_path):
    s = _load(tmp_path, {"AAA.csv": AAA, "BBB.csv": BBB})
    assert s.node_ids == ("AAA", "BBB")
    assert s.channels == ("close", "open", "high", "low", "volume")
    assert list(s.timestamps.strftime("%Y-%m-%d")) == [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]
    assert s.calendar == "trading" and s.attrs["adjusted"] is True
    # AAA: newest-first rows, factor adj/close = 1, 0.5, (absent), 0.5.
    np.testing.assert_allclose(
        s.values[[0, 1, 3], 0, :4], [[8, 8, 9, 7], [5, 5, 5.5, 4.5], [6, 6, 6.5, 5.5]]
    )
    np.testing.assert_allclose(s.values[[0, 1, 3], 0, 4], [300, 200, 100])  # volume unadjusted
    assert not s.mask[2, 0].any() and (s.values[2, 0] == 0).all()  # absent day: masked, not filled
    # BBB: no Adj Close, taken as is; 01-03 absent, empty high on 01-04 masked, volume 0 kept.
    assert not s.mask[1, 1].any()
    np.testing.assert_array_equal(s.mask[2, 1], [True, True, False, True, True])
    np.testing.assert_allclose(s.values[2, 1], [22, 22, 0, 21, 0])
    assert s.mask[:, 1].sum() == 3 * 5 - 1


def test_adjust_false_keeps_raw_prices_and_adj_close(tmp_path):
    s = _load(tmp_path, {"AAA.csv": AAA, "BBB.csv": BBB}, adjust=False)
    assert s.channels[-1] == "adj_close" and s.attrs["adjusted"] is False
    np.testing.assert_allclose(s.values[1, 0], [10, 10, 11, 9, 200, 5])
    assert not s.mask[:, 1, 5].any()  # BBB has no Adj Close column


def test_kdd17_layout_original_open_and_empty_column(tmp_path):
    text = """Date,Original_Open,High,Low,Close,Volume,Adj Close,,Open
1/4/2007,84,86,83,85,100,17,,12
1/3/2007,86,87,82,84,200,42,,12.3
"""
    s = _load(tmp_path, {"X.csv": text})
    # open = Original_Open * adj/close: 86 * 0.5 = 43 and 84 * 0.2 = 16.8 (the split-adjusted Open
    # column is ignored).
    np.testing.assert_allclose(s.values[:, 0, :4], [[42, 43, 43.5, 41], [17, 16.8, 17.2, 16.6]])
    assert list(s.timestamps.day) == [3, 4]


def test_unnamed_index_column_and_exchange_local_dates(tmp_path):
    text = """,close,open
2013-01-02 16:00:00-05:00,10,9
2013-01-03 16:00:00-05:00,11,10
2013-01-04 00:30:00+09:00,12,11
"""
    s = _load(tmp_path, {"T.csv": text})
    # 00:30+09:00 is 2013-01-03 in UTC, but the trading day is the exchange-local 2013-01-04.
    assert list(s.timestamps.strftime("%Y-%m-%d")) == ["2013-01-02", "2013-01-03", "2013-01-04"]
    np.testing.assert_allclose(s.values[:, 0, :2], [[10, 9], [11, 10], [12, 11]])
    assert not s.mask[:, 0, 2:].any()  # no high, low, volume columns


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_table_matches_folder(tmp_path, suffix):
    rows = []
    for ticker, text in (("AAA", AAA), ("BBB", BBB)):
        frame = pd.read_csv(pd.io.common.StringIO(text), dtype={"Date": str})
        rows.append(frame.assign(TICKER=ticker))
    table = pd.concat(rows).rename(columns=str.upper)
    path = tmp_path / f"prices{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    long = load_price_long(_card("price-long", file=path.name), tmp_path).series
    (tmp_path / "f").mkdir()
    folder = _load(tmp_path / "f", {"AAA.csv": AAA, "BBB.csv": BBB})
    assert long.node_ids == folder.node_ids and long.timestamps.equals(folder.timestamps)
    np.testing.assert_array_equal(long.values, folder.values)
    np.testing.assert_array_equal(long.mask, folder.mask)


def test_long_table_duplicate_names_ticker(tmp_path):
    (tmp_path / "p.csv").write_text("date,ticker,close\n2024-01-02,A,1\n2024-01-02,A,2\n")
    with pytest.raises(InputError, match=r"p\.csv: duplicate date 2024-01-02 for ticker A"):
        load_price_long(_card("price-long", file="p.csv"), tmp_path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("Date,Open,Adj Close\n2024-01-02,1,1\n", r"BAD\.csv: no close column"),
        (
            "Date,Close\n2024-01-02,1\n2024-13-45,2\n",
            r"BAD\.csv: unparseable .*'2024-13-45' at line 3",
        ),
        ("Date,Close\n2024-01-02,1\n1/2/2024,2\n", r"BAD\.csv: duplicate date 2024-01-02"),
        (
            "Date,Close\n2024-01-02,1\n2024-01-03,0\n",
            r"BAD\.csv: non-positive close 0\.0 on 2024-01-03",
        ),
        ("Date,Close\n2024-01-02,abc\n", r"BAD\.csv: non-numeric close 'abc' at line 2"),
        ("Date,Close,Volume\n2024-01-02,1,-5\n", r"BAD\.csv: negative volume on 2024-01-02"),
    ],
)
def test_bad_ticker_files(tmp_path, text, pattern):
    with pytest.raises(InputError, match=pattern):
        _load(tmp_path, {"BAD.csv": text, "OK.csv": "Date,Close\n2024-01-02,1\n"})


def test_nonpositive_mask_option(tmp_path):
    s = _load(tmp_path, {"Z.csv": "Date,Close,Low\n2024-01-02,5,0\n"}, nonpositive="mask")
    np.testing.assert_array_equal(s.mask[0, 0], [True, False, False, False, False])


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(InputError, match=r"raw holds no \*\.csv"):
        load_price_folder(_card(folder="raw"), tmp_path)
    with pytest.raises(InputError, match=r"nowhere does not exist"):
        load_price_folder(_card(folder="nowhere"), tmp_path)


def test_trading_dates_validated(tmp_path):
    files = {"AAA.csv": AAA, "days.csv": "2024-01-02\n2024-01-03\n2024-01-05\n"}
    (tmp_path / "p").mkdir()
    _folder(tmp_path, {"days.csv": files["days.csv"]})
    _folder(tmp_path / "p", {"AAA.csv": AAA})
    s = load_price_folder(_card(folder="p", trading_dates="days.csv"), tmp_path).series
    assert len(s.timestamps) == 3
    (tmp_path / "days.csv").write_text("2024-01-02\n2024-01-05\n2024-01-08\n")
    with pytest.raises(InputError, match=r"days\.csv: .*1 day\(s\) only in the files .*2024-01-03"):
        load_price_folder(_card(folder="p", trading_dates="days.csv"), tmp_path)


def test_sectors_from_table_and_json(tmp_path):
    (tmp_path / "p").mkdir()
    _folder(tmp_path / "p", {"AAA.csv": AAA, "BBB.csv": BBB})
    (tmp_path / "table").write_text("Sector\tSymbol\tCompany\nTech\t$AAA\tA Inc\nFood\t$ZZZ\tZ\n")
    s = load_price_folder(_card(folder="p", sectors="table"), tmp_path).series
    assert s.attrs["sectors"] == {"AAA": "Tech"}  # only the panel's tickers
    (tmp_path / "s.json").write_text(json.dumps({"Tech": ["AAA"], "Food": ["BBB"]}))
    s = load_price_folder(_card(folder="p", sectors="s.json"), tmp_path).series
    assert s.attrs["sectors"] == {"AAA": "Tech", "BBB": "Food"}
    (tmp_path / "s.json").write_text(json.dumps({"Tech": ["AAA"], "Food": ["AAA"]}))
    with pytest.raises(InputError, match=r"s\.json: ticker AAA is in two sectors"):
        load_price_folder(_card(folder="p", sectors="s.json"), tmp_path)


def test_trading_calendar_refuses_freq_and_gives_features(tmp_path):
    s = _load(tmp_path, {"AAA.csv": AAA})
    with pytest.raises(InputError, match="steps_per_day is undefined for a trading-calendar"):
        _ = s.steps_per_day
    with pytest.raises(InputError, match="freq is undefined"):
        _ = s.freq
    stamps = pd.DatetimeIndex(["2024-01-05", "2024-12-25", "2025-03-03"])
    np.testing.assert_array_equal(trading_day_features(stamps), [[4, 0], [2, 11], [0, 2]])


def test_regular_series_keeps_its_frequency():
    stamps = pd.date_range("2024-01-01", periods=3, freq="5min")
    s = Series(np.zeros((3, 1, 1), np.float32), np.ones((3, 1, 1), bool), stamps, ("a",))
    assert s.calendar == "regular" and s.steps_per_day == 288


@pytest.mark.real_data
def test_stocknet_card(shared_data):
    data = open_dataset("stocknet", data_dir=shared_data / "finance" / "stocknet")
    s = data.series
    assert (s.num_nodes, s.num_steps) == (88, 1258) and s.calendar == "trading"
    day = s.timestamps.get_loc(pd.Timestamp("2016-06-29"))
    empty = [s.node_ids.index(t) for t in ("PTR", "REX", "SNP")]
    assert not s.mask[day, empty].any() and (s.values[day, empty] == 0).all()
    assert s.mask[day, s.node_ids.index("AAPL")].all()
    # BABA listed on 2014-09-19: masked before, observed from then on.
    baba = s.node_ids.index("BABA")
    first = int(np.flatnonzero(s.mask[:, baba, 0])[0])
    assert s.timestamps[first] == pd.Timestamp("2014-09-19") and s.mask[first:, baba, 0].all()
    assert s.attrs["sectors"]["AAPL"] == "Consumer Goods" and len(s.attrs["sectors"]) == 88
    # AAPL on 2012-09-04: close = Adj Close; open scaled by adj/close.
    aapl = s.node_ids.index("AAPL")
    np.testing.assert_allclose(
        s.values[0, aapl, :2], [87.121140, 95.108574 * 87.121140 / 96.424286], rtol=1e-6
    )


@pytest.mark.real_data
def test_kdd17_card(shared_data):
    s = open_dataset("kdd17", data_dir=shared_data / "finance" / "kdd17").series
    assert (s.num_nodes, s.num_steps) == (50, 2518) and s.mask.all()
    assert s.timestamps[0] == pd.Timestamp("2007-01-03")
    assert s.timestamps[-1] == pd.Timestamp("2016-12-30")
    aapl = s.node_ids.index("AAPL")  # 1/3/2007 row: Original_Open 86.289999, Close 83.800002
    np.testing.assert_allclose(
        s.values[0, aapl, :2], [10.904162, 86.289999 * 10.904162 / 83.800002], rtol=1e-6
    )


def test_day_without_adj_close_is_masked_when_others_have_one(tmp_path):
    text = "Date,Close,Open,Adj Close\n2024-01-02,10,9,5\n2024-01-03,12,11,\n"
    s = _load(tmp_path, {"A.csv": text})
    np.testing.assert_allclose(s.values[0, 0, :2], [5, 4.5])
    assert not s.mask[1, 0, :2].any()  # cannot be adjusted: masked, not left raw


def test_user_price_file_by_path(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("Date,Symbol,Close\n2024-01-03,B,2\n2024-01-02,A,1\n2024-01-04,A,3\n")
    s = open_dataset(str(path)).series
    assert s.node_ids == ("A", "B") and s.calendar == "trading"
    np.testing.assert_array_equal(s.mask[:, :, 0], [[True, False], [False, True], [True, False]])
    np.testing.assert_allclose(s.values[:, :, 0], [[1, 0], [0, 2], [3, 0]])
    with pytest.raises(InputError, match="price table .* --freq does not apply"):
        open_dataset(str(path), freq="1D")


def test_tz_aware_datetime_column_keeps_local_date(tmp_path):
    ny = pd.Series(pd.to_datetime(["2013-01-02 16:00"]).tz_localize("America/New_York"))
    tokyo = pd.Series(pd.to_datetime(["2013-01-04 00:30"]).tz_localize("Asia/Tokyo"))
    assert parse_dates(ny, tmp_path / "x.parquet")[0] == pd.Timestamp("2013-01-02")
    assert parse_dates(tokyo, tmp_path / "x.parquet")[0] == pd.Timestamp("2013-01-04")


@pytest.mark.real_data
def test_stocknet_raw_nan_cells_are_the_masked_ones(shared_data):
    card = _card(folder="price/raw", adjust=False)
    s = load_price_folder(card, shared_data / "finance" / "stocknet").series
    assert s.channels[-1] == "adj_close"
    day = s.timestamps.get_loc(pd.Timestamp("2016-06-29"))
    masked = sorted(s.node_ids[i] for i in np.flatnonzero(~s.mask[day].any(axis=1)))
    assert masked == ["GMRE", "PTR", "REX", "SNP"]  # GMRE: listed later, no row that day
    assert s.mask[day].sum() == (88 - 4) * 6  # the 18 NaN cells are all of the masked ones
