"""`stgraph fit` on a user's own prices (`--task cross-section`): a long Parquet table and a folder
of per-ticker CSV files give the same run, and bad price input exits 2 with one error line that
names the file (or setting) and the problem, leaving nothing behind (no MLflow run, no checkpoint,
no file), as the other bad-input cases of `tests/test_cli_errors.py`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from stgraph.cli import main
from tests.helpers import long_table, price_series
from tests.test_cli_errors import (
    _assert_nothing_written,
    _assert_one_error_line,
    _snapshot,
    run_cli,
)

FIT = ["--task", "cross-section", "--model", "momentum", "--batch-size", "16"]
SMALL_K = ["--set", "task.params.top_k=2"]  # the default top_k (10) needs 10 stocks
NO_TEST_DAYS = [  # the data ends on 2020-08-11
    "--set", "data.split.method=date",
    "--set", "data.split.val_start=2020-05-01",
    "--set", "data.split.test_start=2099-01-01",
]  # fmt: skip


def panel_table() -> pd.DataFrame:
    """160 weekdays from 2020-01-01 of 6 random-walk stocks S0..S5, as a long table."""
    return long_table(price_series(days=160, stocks=6))


def write_folder(
    table: pd.DataFrame,
    folder: Path,
    edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    edited: str = "S2",
) -> Path:
    """``folder/TICKER.csv`` per ticker; ``edit`` changes the rows of ticker ``edited``."""
    folder.mkdir()
    for ticker, rows in table.groupby("ticker"):
        rows = rows.drop(columns="ticker").reset_index(drop=True)
        if edit is not None and ticker == edited:
            rows = edit(rows)
        rows.to_csv(folder / f"{ticker}.csv", index=False)
    return folder


# ----------------------------------------------------------------------------- good input
@pytest.mark.slow  # two fits (momentum: no training, ~5 s each with the report)
def test_fit_on_a_price_table_and_on_a_price_folder(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.chdir(tmp_path)
    table = panel_table()
    table.to_parquet(tmp_path / "prices.parquet", index=False)
    folder = write_folder(table, tmp_path / "prices")
    summaries = {}
    for kind, path in (("table", tmp_path / "prices.parquet"), ("folder", folder)):
        assert main(["fit", str(path), *FIT, *SMALL_K, "--quiet", "--json"]) == 0
        summaries[kind] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for summary in summaries.values():
        assert summary["task"] == "cross-section" and summary["dataset"] == "prices"
        # The ratio split by default (0.7/0.1/0.2 of the 160 days): prediction dates t with
        # 20 days before and 2 after in the test part, days 128..159 -> t = 128..157.
        assert summary["test"]["days"] == 30 and summary["test"]["ic_days"] == 30
        assert summary["test"]["direction_cells"] == 30 * 6
        assert -1 <= summary["test"]["rank_ic"] <= 1
    assert summaries["folder"]["test"] == pytest.approx(summaries["table"]["test"], rel=1e-6)


# ----------------------------------------------------------------------------- bad input
def _in_folder(edit: Callable[[pd.DataFrame], pd.DataFrame] | None, *extra: str, edited="S2"):
    def build(tmp: Path) -> list[str]:
        folder = write_folder(panel_table(), tmp / "prices", edit, edited)
        return ["fit", str(folder), *FIT, *extra]

    return build


def _empty_folder(tmp: Path) -> list[str]:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("prices to come\n")
    return ["fit", str(tmp / "notes"), *FIT]


def _nonpositive_in_table(tmp: Path) -> list[str]:
    table = panel_table()
    table.loc[10, "close"] = -1.0  # S0 on 2020-01-15
    table.to_parquet(tmp / "prices.parquet", index=False)
    return ["fit", str(tmp / "prices.parquet"), *FIT]


def _set_row(column: str, row: int, value):
    def edit(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.astype({column: object})
        rows.loc[row, column] = value
        return rows

    return edit


CASES: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    "no-close-column": (
        _in_folder(lambda rows: rows.drop(columns="close")),
        ("prices/S2.csv", "no close column", "found columns date, open, high, low, volume"),
    ),
    # the first file decides nothing: the folder is still read as prices, and the file named
    "first-file-without-close": (
        _in_folder(lambda rows: rows.drop(columns="close"), edited="S0"),
        ("prices/S0.csv", "no close column"),
    ),
    "folder-without-price-files": (
        _empty_folder,
        ("notes: a data folder is read as daily prices", "no *.csv file with a close column"),
    ),
    "unparseable-date": (  # row 5 is line 7 (header, then 1-based rows)
        _in_folder(_set_row("date", 5, "yesterday")),
        ("prices/S2.csv", "unparseable or missing date 'yesterday' at line 7"),
    ),
    "duplicate-date": (
        _in_folder(_set_row("date", 6, "2020-01-08")),  # row 5's date (the 6th weekday)
        ("prices/S2.csv", "duplicate date 2020-01-08"),
    ),
    "nonpositive-price-in-folder": (
        _in_folder(_set_row("close", 7, 0.0)),
        ("prices/S2.csv", "non-positive close 0.0 on 2020-01-10"),
    ),
    "nonpositive-price-in-table": (
        _nonpositive_in_table,
        ("prices.parquet", "non-positive close -1.0 on 2020-01-15"),
    ),
    "universe-smaller-than-top-k": (
        _in_folder(None, "--set", "task.params.top_k=50"),
        ("prices: the universe has 6 stocks", "task.params.top_k = 50"),
    ),
    "test-period-without-a-trading-day": (
        _in_folder(None, *SMALL_K, *NO_TEST_DAYS),
        ("prices: the test period (no trading day)", "move the split dates"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_price_input(name, tmp_path, monkeypatch, capsys):
    build, expect = CASES[name]
    argv = build(tmp_path)
    monkeypatch.chdir(tmp_path)  # MLflow would put a run's artifacts in ./mlruns
    before = _snapshot(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    _assert_one_error_line(captured.err, expect)
    assert captured.out == ""
    _assert_nothing_written(before, tmp_path)


@pytest.mark.slow  # a `python -m stgraph` process
def test_bad_price_input_in_a_subprocess(tmp_path):
    """The console entry point's real exit status and stderr, for one case."""
    build, expect = CASES["nonpositive-price-in-table"]
    argv = build(tmp_path)
    before = _snapshot(tmp_path)
    result = run_cli([*argv, "--json"], tmp_path)
    assert result.returncode == 2, result.stderr
    _assert_one_error_line(result.stderr, expect)
    assert result.stdout == ""
    _assert_nothing_written(before, tmp_path)


def test_a_user_price_series_names_its_file_or_folder(tmp_path):
    """``attrs["source"]``: the long table itself, or the folder of ticker files (what error
    messages about the data name)."""
    from stgraph.data.sources import open_dataset

    table = panel_table()
    table.to_parquet(tmp_path / "prices.parquet", index=False)
    folder = write_folder(table, tmp_path / "prices")
    assert open_dataset(str(tmp_path / "prices.parquet")).series.attrs["source"] == str(
        tmp_path / "prices.parquet"
    )
    assert open_dataset(str(folder)).series.attrs["source"] == str(folder)
