"""A cross-section model served end to end on a synthetic price panel: `stgraph fit PRICES
--task cross-section --register`, then the MLflow pyfunc model and `stgraph forecast` on a long
price table and on a folder of per-ticker CSV files, `--as-of`, the realised direction misses,
bad price input, and a daily job (`stgraph job run` and `job score`).

Momentum is the model (nothing to train): its score is each stock's return over the last 20
days, ``close[d] / close[d - 20] - 1``, so every served number is checked by hand. One fit for
the module; the realised-error rules are also checked on a hand-made five-day case."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.cli import main
from stgraph.errors import InputError
from stgraph.tasks.cross_section import CrossSectionOutput
from stgraph.tasks.cross_section.panel import StockPanel
from stgraph.tasks.cross_section.predictor import StockRanker
from tests.helpers import long_table, price_series

pytestmark = pytest.mark.slow

NAME = "toy-stock-momentum"
DAYS, STOCKS, LOOKBACK, HORIZON = 250, 6, 20, 2
COLUMNS = ["as_of", "horizon", "rank", "ticker", "score", "prob_up"]


def _main_json(argv: list[str]) -> dict:
    """``main(argv + ["--json"])``; its last stdout line as JSON (no capsys: module scope)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--json"])
    assert code == 0, err.getvalue()[-3000:]
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _main_error(argv: list[str], capsys) -> str:
    """``main(argv)`` must exit 2 with one error line; returns it."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    (line,) = [x for x in captured.err.splitlines() if x.startswith("stgraph: error: ")]
    return line


def write_folder(table: pd.DataFrame, folder: Path) -> Path:
    """One ``TICKER.csv`` (``date,close,open,...``) per ticker of a long table."""
    folder.mkdir(parents=True, exist_ok=True)
    for ticker, rows in table.groupby("ticker"):
        rows.drop(columns="ticker").to_csv(folder / f"{ticker}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def store(_session_home, tmp_path_factory):
    """The MLflow store conftest gives each test, for the module's fixtures."""
    work = tmp_path_factory.mktemp("stock-serving")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STGRAPH_HOME", str(_session_home))
        patch.setenv("STGRAPH_CACHE_DIR", str(work / "cache"))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{_session_home / 'mlflow.db'}")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("STGRAPH_DATA_DIR", raising=False)
        yield patch


@pytest.fixture(scope="module")
def prices(tmp_path_factory):
    """The panel as a long Parquet table and as a folder of per-ticker CSV files."""
    series = price_series(days=DAYS, stocks=STOCKS)
    folder = tmp_path_factory.mktemp("prices")
    table = long_table(series)
    table.to_parquet(folder / "prices.parquet", index=False)
    table.to_csv(folder / "prices.csv", index=False)
    return {
        "series": series,
        "close": series.values[:, :, 0].astype(np.float64),
        "table": table,
        "parquet": folder / "prices.parquet",
        "csv": folder / "prices.csv",
        "folder": write_folder(table, folder / "tickers"),
    }


@pytest.fixture(scope="module")
def fitted(store, prices, tmp_path_factory):
    from stgraph.serving.registry import promote

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("fit"))  # a new experiment's artifacts: ./mlruns
        summary = _main_json(
            ["fit", str(prices["parquet"]), "--task", "cross-section", "--model", "momentum",
             "--set", "task.params.top_k=2", "--threads", "1", "--register", NAME, "--quiet"]
        )  # fmt: skip
    promote(NAME, summary["registered_version"], "prod")
    return summary


@pytest.fixture(scope="module")
def fitted_mlp(store, prices, tmp_path_factory):
    """A one-epoch MLP (reads the Alpha360 factors and the returns), fitted on the folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("fit-mlp"))
        return _main_json(
            ["fit", str(prices["folder"]), "--task", "cross-section", "--model", "mlp",
             "--epochs", "1", "--set", "task.params.top_k=2", "--threads", "1",
             "--register", f"{NAME}-mlp", "--quiet"]
        )  # fmt: skip


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def expected_table(prices: dict, day: int) -> pd.DataFrame:
    """Momentum's ranking made on ``day``, by hand."""
    close = prices["close"]
    score = close[day] / close[day - LOOKBACK] - 1
    order = np.argsort(-score)
    return pd.DataFrame(
        {
            "as_of": prices["series"].timestamps[day],
            "horizon": HORIZON,
            "rank": np.arange(1, STOCKS + 1),
            "ticker": np.asarray(prices["series"].node_ids, dtype=object)[order],
            "score": score[order],
            "prob_up": np.nan,
        }
    )


def assert_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    table = table[COLUMNS].reset_index(drop=True)
    assert table["ticker"].is_unique and len(table) == STOCKS
    assert (np.diff(table["score"].to_numpy()) <= 0).all()
    assert table["score"].to_numpy() == pytest.approx(expected["score"].to_numpy(), rel=1e-4)
    pd.testing.assert_frame_equal(
        table.drop(columns="score"), expected.drop(columns="score"), check_dtype=False
    )


# ---------------------------------------------------------------------- the served model
def test_pyfunc_model_ranks_the_universe_from_a_long_price_table(fitted, prices):
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@prod")
    request = pd.read_csv(prices["csv"], dtype=str)  # as a client would send it: text
    served = model.predict(request)
    assert list(served.columns) == COLUMNS
    assert_table(served, expected_table(prices, DAYS - 1))
    # extra columns and upper-case names are read too; the row order does not matter
    shuffled = request.rename(columns=str.upper).assign(NOTE="x").sample(frac=1, random_state=0)
    pd.testing.assert_frame_equal(model.predict(shuffled), served)


def test_forecast_reads_a_price_file_and_a_price_folder_alike(fitted, prices, tmp_path):
    tables = {}
    for kind in ("parquet", "folder"):
        summary = _main_json(
            ["forecast", f"models:/{NAME}@prod", "--input", str(prices[kind]),
             "--output", str(tmp_path / f"{kind}.parquet")]
        )  # fmt: skip
        tables[kind] = pd.read_parquet(tmp_path / f"{kind}.parquet")
        assert summary["rows"] == STOCKS
        assert pd.Timestamp(summary["as_of"]) == prices["series"].timestamps[-1]
        assert summary["model_version"] == fitted["registered_version"]
        run = mlflow.MlflowClient().get_run(summary["run_id"])
        assert run.data.metrics["input_tickers"] == STOCKS
        assert run.data.metrics["input_days"] == DAYS
        assert run.data.metrics["window_observed_fraction"] == 1.0
    assert_table(tables["parquet"], expected_table(prices, DAYS - 1))
    assert set(tables["parquet"]["model_version"]) == {fitted["registered_version"]}
    pd.testing.assert_frame_equal(tables["folder"], tables["parquet"])


def test_as_of_picks_the_last_trading_day_on_or_before_it(fitted, prices, tmp_path):
    dates = prices["series"].timestamps
    saturday = pd.Timestamp("2020-05-02")
    day = int(np.flatnonzero(dates == pd.Timestamp("2020-05-01"))[0])  # the Friday before
    summary = _main_json(
        ["forecast", f"models:/{NAME}/{fitted['registered_version']}", "--input",
         str(prices["folder"]), "--as-of", str(saturday.date()), "--output",
         str(tmp_path / "out.csv")]
    )  # fmt: skip
    assert pd.Timestamp(summary["as_of"]) == dates[day]
    table = pd.read_csv(tmp_path / "out.csv", parse_dates=["as_of"])
    assert_table(table, expected_table(prices, day))


@pytest.mark.parametrize("model", ["momentum", "mlp"])
def test_served_scores_equal_the_runs_test_predictions(model, prices, tmp_path, request):
    """Three test dates of the run's `predictions/test.parquet`, served with --as-of: the same
    scores (no skew between how the task scored and how serving reads prices: factors,
    their z-scores, returns)."""
    from stgraph.serving.registry import resolve_model

    summary = request.getfixturevalue("fitted" if model == "momentum" else "fitted_mlp")
    path = mlflow.artifacts.download_artifacts(
        run_id=summary["run_id"], artifact_path="predictions/test.parquet", dst_path=str(tmp_path)
    )
    logged = pd.read_parquet(path)
    assert logged["date"].nunique() == 48  # the ratio split's test dates, days 200..247
    name = NAME if model == "momentum" else f"{NAME}-mlp"
    ranker = resolve_model(f"models:/{name}/{summary['registered_version']}").predictor
    data = ranker.read_input(prices["folder"], None, None)
    for date in logged["date"].drop_duplicates().iloc[[0, 13, -1]]:
        served = ranker.predict(data, as_of=date).set_index("ticker")["score"]
        expected = logged[logged["date"] == date].set_index("ticker")["score"]
        assert len(expected) == STOCKS
        assert served[expected.index].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-5)


def test_too_little_history_or_a_missing_ticker_is_named(fitted, prices, tmp_path, capsys):
    uri = f"models:/{NAME}@prod"
    # a 20-day window and Alpha360's 59 earlier days: 79 days; the input has 78 up to this day
    early = str(prices["series"].timestamps[77].date())
    line = _main_error(
        ["forecast", uri, "--input", str(prices["parquet"]), "--as-of", early,
         "--output", str(tmp_path / "out.parquet")], capsys
    )  # fmt: skip
    assert str(prices["parquet"]) in line and "needs 79 trading days up to 2020-04-17" in line
    assert "59 before them for its alpha360 factors), found 78" in line

    lacking = tmp_path / "lacking.parquet"
    prices["table"][prices["table"]["ticker"] != "S3"].to_parquet(lacking)
    line = _main_error(
        ["forecast", uri, "--input", str(lacking), "--output", str(tmp_path / "out.parquet")],
        capsys,
    )
    assert str(lacking) in line and "1 ticker(s) of the model's universe are absent" in line
    assert "'S3'" in line
    assert not (tmp_path / "out.parquet").exists()

    # a ticker the model never saw is left out of the ranking and counted
    extra = prices["table"][prices["table"]["ticker"] == "S0"].assign(ticker="NEW")
    wider = tmp_path / "wider.csv"
    pd.concat([prices["table"], extra]).to_csv(wider, index=False)
    summary = _main_json(
        ["forecast", uri, "--input", str(wider), "--output", str(tmp_path / "wider.parquet")]
    )
    table = pd.read_parquet(tmp_path / "wider.parquet")
    assert "NEW" not in set(table["ticker"]) and len(table) == STOCKS
    assert mlflow.get_run(summary["run_id"]).data.metrics["unknown_tickers"] == 1

    nowhere = tmp_path / "nowhere.csv"
    line = _main_error(
        ["forecast", uri, "--input", str(nowhere), "--output", str(tmp_path / "out.parquet")],
        capsys,
    )
    assert str(nowhere) in line and "no such file" in line


class FactorSum(torch.nn.Module):
    """Scores each stock by the sum of its factors over the window (reads every factor)."""

    def forward(self, inputs):
        score = inputs.factors.sum(dim=(1, 3))
        return CrossSectionOutput(score[:, None].expand(-1, HORIZON, -1))


def test_the_served_ranking_needs_the_factors_whole_history():
    """With the 79 days Alpha360 needs, a ranking equals the one made from the whole history;
    with 21 days (enough returns, not enough factor lags) it would not, so it is refused."""
    series = price_series(days=DAYS, stocks=STOCKS)
    state = {"tickers": list(series.node_ids), "window": LOOKBACK, "horizon": HORIZON,
             "factors": "alpha360", "zscore": "plain", "calendar": "trading"}  # fmt: skip
    ranker = StockRanker(state, FactorSum())
    whole = ranker.rank(StockPanel.of(series), DAYS - 1, "whole")
    last = StockPanel.of(series.slice_steps(DAYS - 79, DAYS))
    pd.testing.assert_frame_equal(ranker.rank(last, 78, "last 79"), whole, atol=1e-5)
    short = StockPanel.of(series.slice_steps(DAYS - LOOKBACK - 1, DAYS))
    assert not np.allclose(short.factors(np.arange(1, 21), "alpha360", "plain"),
                           last.factors(np.arange(59, 79), "alpha360", "plain"))  # fmt: skip
    with pytest.raises(InputError, match="short: the model needs 79 trading days .* found 78"):
        ranker.rank(StockPanel.of(series.slice_steps(DAYS - 78, DAYS)), 77, "short")


# ---------------------------------------------------------------------- realised errors
FIVE_DAYS = """date,ticker,open,high,low,close,volume
2020-01-06,A,10,10,10,10,100
2020-01-07,A,11,11,11,11,100
2020-01-08,A,12,12,12,12,100
2020-01-09,A,11,11,11,11,100
2020-01-10,A,11,11,11,11,100
2020-01-06,B,10,10,10,10,100
2020-01-07,B,10,10,10,10,100
2020-01-08,B,9,9,9,9,100
2020-01-09,B,10,10,10,10,100
2020-01-10,B,10,10,10,10,100
2020-01-06,C,10,10,10,10,100
2020-01-07,C,10,10,10,10,100
2020-01-08,C,10,10,10,10,100
2020-01-09,C,10,10,10,10,100
"""


def test_realised_errors_score_the_predicted_direction(tmp_path):
    """With horizon 2 a prediction made on day d scores ``close[d+2] / close[d+1] - 1``:
    A: +9.1% (d0), -8.3% (d1), 0 (d2); B: -10% (d0), +11.1% (d1), 0 (d2); C: 0, 0, absent."""
    path = tmp_path / "five.csv"
    path.write_text(FIVE_DAYS)
    state = {"tickers": ["A", "B", "C"], "window": 2, "horizon": 2}
    ranker = StockRanker(state, torch.nn.Identity())
    data = ranker.read_input(path, None, None)
    d = pd.bdate_range("2020-01-06", periods=4)
    nan = np.nan
    predictions = pd.DataFrame(
        [  # as_of, ticker, score, prob_up: prob_up decides where given, else the score's sign
            (d[0], "A", 0.5, nan),  # up, rose: hit
            (d[0], "B", -0.1, nan),  # down, fell: hit
            (d[0], "C", -1.0, 0.7),  # up (prob_up), flat: miss
            (d[1], "A", 0.4, 0.2),  # down (prob_up), fell: hit
            (d[1], "B", 0.3, nan),  # up, rose: hit
            (d[1], "C", nan, nan),  # no prediction (a suspended stock): not scored
            (d[2], "A", 1.0, nan),  # up, flat: miss
            (d[2], "C", 1.0, nan),  # C has no close on d4: not known yet
            (d[3], "A", 1.0, nan),  # d5 is not in the data yet
            (d[0], "ZZZ", 1.0, nan),  # not the model's
        ],
        columns=["as_of", "ticker", "score", "prob_up"],
    ).assign(horizon=2)
    errors = ranker.realised_errors(predictions, data)
    assert list(errors.columns) == ["as_of", "horizon", "error"]
    # the same table twice (a weekend tick's file) is scored once
    assert ranker.realised_errors(pd.concat([predictions] * 2), data).equals(errors)
    assert errors["as_of"].tolist() == [d[0], d[0], d[0], d[1], d[1], d[2]]
    assert errors["error"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert (errors["horizon"] == 2).all()
    assert ranker.realised_errors(predictions.iloc[:0], data).empty


def test_realised_errors_of_a_served_table(fitted, prices):
    """The table the model served on day d, scored against the prices that followed."""
    from stgraph.serving.registry import resolve_model

    ranker = resolve_model(f"models:/{NAME}@prod").predictor
    data = ranker.read_input(prices["parquet"], None, None)
    day = DAYS - 10
    table = ranker.predict(data, as_of=prices["series"].timestamps[day])
    errors = ranker.realised_errors(table, data)
    close = prices["close"]
    rose = dict(zip(prices["series"].node_ids, close[day + 2] > close[day + 1]))
    expected = [float((s > 0) != rose[t]) for t, s in zip(table["ticker"], table["score"])]
    assert errors["error"].tolist() == expected and len(expected) == STOCKS
    # the last day's table is not scored yet
    assert ranker.realised_errors(ranker.predict(data), data).empty


# ---------------------------------------------------------------------- bad input
def test_bad_price_input_is_an_input_error_naming_the_file(fitted, prices, tmp_path):
    from stgraph.serving.registry import resolve_model

    ranker = resolve_model(f"models:/{NAME}@prod").predictor
    wide = tmp_path / "wide.csv"
    wide.write_text("timestamp,a,b\n2020-01-01 00:00,1,2\n2020-01-01 00:05,1,2\n")
    with pytest.raises(InputError, match=r"wide.csv: not a daily price table"):
        ranker.read_input(wide, None, None)
    with pytest.raises(InputError, match="--input FILE_OR_FOLDER or --dataset NAME"):
        ranker.read_input(None, None, None)
    garbled = prices["table"].astype({"date": str})
    garbled.loc[3, "date"] = "someday"
    with pytest.raises(InputError, match="request: unparseable or missing date 'someday'"):
        ranker.predict_frame(garbled)
    lacking = prices["table"][prices["table"]["ticker"] != "S5"]
    with pytest.raises(InputError, match=r"request: 1 ticker\(s\) .* absent, e.g. \['S5'\]"):
        ranker.predict_frame(lacking)
    with pytest.raises(InputError, match="--as-of 'soon' is not a date"):
        ranker.predict(ranker.read_input(prices["parquet"], None, None), as_of="soon")


# ---------------------------------------------------------------------- a daily job
def test_a_daily_job_ticks_once_and_scores_direction_misses(fitted, prices, tmp_path):
    dates = prices["series"].timestamps
    day = DAYS - 5
    job = tmp_path / "stocks.yaml"
    job.write_text(
        f"model_uri: models:/{NAME}@prod\ninput: {prices['folder']}\n"
        f"output: {tmp_path / 'out'}/{{as_of:%Y-%m-%d}}.parquet\nfrequency: 1D\n"
        "experiment: stock-jobs\n"
    )
    ran = _main_json(["job", "run", str(job), "--as-of", str(dates[day].date())])
    [written] = ran["written"]
    assert written["output"] == str(tmp_path / "out" / f"{dates[day].date()}.parquet")
    table = pd.read_parquet(written["output"])
    assert_table(table, expected_table(prices, day))
    again = _main_json(["job", "run", str(job), "--as-of", str(dates[day].date())])
    assert again["written"] == [] and again["skipped"] == [written["output"]]

    score = _main_json(["job", "score", str(job)])
    close = prices["close"]
    rose = dict(zip(prices["series"].node_ids, close[day + 2] > close[day + 1]))
    misses = [float((s > 0) != rose[t]) for t, s in zip(table["ticker"], table["score"])]
    assert score["error"] == "direction_miss" and score["scored_rows"] == STOCKS
    assert score["mae_by_horizon"] == {"2": pytest.approx(np.mean(misses))}
    run = mlflow.get_run(score["run_id"])
    assert run.data.metrics["realised_direction_miss"] == pytest.approx(np.mean(misses))

    # A backfill over a weekend (Friday to Monday, 1D): four files, the weekend's two repeat
    # Friday's ranking; each trading day is scored once.
    friday, monday = pd.Timestamp("2020-07-31"), pd.Timestamp("2020-08-03")
    filled = _main_json(["job", "backfill", str(job), "--start", str(friday.date()),
                         "--end", str(monday.date())])  # fmt: skip
    assert len(filled["written"]) == 4
    saturday = pd.read_parquet(tmp_path / "out" / "2020-08-01.parquet")
    assert (saturday["as_of"] == friday).all()
    pd.testing.assert_frame_equal(saturday, pd.read_parquet(tmp_path / "out/2020-07-31.parquet"))
    score = _main_json(["job", "score", str(job)])
    assert score["forecast_files"] == 5 and score["scored_rows"] == 3 * STOCKS
    misses = []
    for d in (friday, monday, dates[day]):
        i = dates.get_loc(d)
        rose = close[i + 2] > close[i + 1]
        misses += ((close[i] / close[i - LOOKBACK] - 1 > 0) != rose).tolist()
    assert score["realised_mae"] == pytest.approx(np.mean(misses))


@pytest.mark.real_data
def test_the_shipped_stocknet_job_ticks_once(store, shared_data, tmp_path, monkeypatch):
    """`pipelines/jobs/stocknet-daily.yaml` with momentum registered under its model name:
    one tick on the last trading day of StockNet, the 84-stock training universe ranked."""
    from stgraph.serving.jobs import load_job
    from stgraph.serving.registry import promote

    spec = load_job("stocknet-daily")
    assert spec.model_uri == "models:/stocknet-ranker@prod" and spec.dataset == "stocknet"
    monkeypatch.setenv("STGRAPH_DATA_DIR", str(shared_data / "finance"))
    monkeypatch.setenv("STGRAPH_HOME", str(tmp_path / "home"))  # the job's forecasts folder
    fit = _main_json(
        ["fit", "stocknet", "--model", "momentum", "--register", "stocknet-ranker", "--quiet",
         "--threads", "1"]
    )  # fmt: skip
    promote("stocknet-ranker", fit["registered_version"], "prod")
    ran = _main_json(["job", "run", "stocknet-daily"])
    [written] = ran["written"]
    assert written["output"] == str(tmp_path / "home/forecasts/stocknet/2017-09-01.parquet")
    table = pd.read_parquet(written["output"])
    assert len(table) == 84 and table["ticker"].is_unique
    assert table["rank"].tolist() == list(range(1, 85))
    assert (table["as_of"] == pd.Timestamp("2017-09-01")).all() and (table["horizon"] == 2).all()
    assert not {"ABBV", "AGFS", "BABA", "GMRE"} & set(table["ticker"])  # listed after 2012
    assert mlflow.get_run(written["run_id"]).data.tags["stgraph.job"] == "stocknet-daily"
