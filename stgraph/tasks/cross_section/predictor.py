"""A trained cross-section model ready to serve: recent prices of the universe in, the stocks
ranked for the next trading days out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stgraph.data.series import Series
from stgraph.errors import InputError
from stgraph.tasks.base import Predictor
from stgraph.tasks.cross_section.batch import CrossSectionInputs
from stgraph.tasks.cross_section.panel import StockPanel, factor_lookback, synthetic_calendar


@dataclass
class PriceHistory:
    """Recent prices of the model's universe (tickers in training order, `StockPanel`)."""

    panel: StockPanel
    source: str
    sha256: str
    unknown_tickers: int  # tickers of the input the model was not trained on (ignored)


class StockRanker(Predictor):
    """Scores every stock of the training universe from the last ``window`` trading days, with
    the facts the task exported (`CrossSectionTask.export`).

    Rows of the prediction table: ``as_of`` (the last trading day used), ``horizon`` (the scored
    step: with 2, the return from the close of the day after ``as_of`` to the close of the day
    after that, Qlib's label), ``rank`` (1 = the most attractive), ``ticker``, ``score`` and
    ``prob_up`` (the direction head's probability of a rise; NaN for models without one).
    `realised_errors` scores a prediction once that return is known: ``error`` is 1 where the
    predicted direction was wrong, else 0.

    The input must hold the ``window`` trading days up to ``as_of`` and the days before them
    that the factors look back (59 for Alpha360: 79 days with a 20-day window), so that every
    factor is defined as it was on the dates the model was tested on.
    """

    error_name = "direction_miss"

    id_columns = ("ticker",)

    def __init__(self, state: dict[str, Any], model: torch.nn.Module) -> None:
        self.state = state
        self.model = model.eval()
        self.tickers: list[str] = list(state["tickers"])
        self.window = int(state["window"])
        self.horizon = int(state["horizon"])
        # Days before the window that its factors read (Alpha360: 60 lags; the Alpha158 subset:
        # 60-day rolling windows). With fewer, the first window days' factors are undefined
        # (zeros after the z-score): not what the model saw on the dates it was tested on.
        self.factor_days = factor_lookback(state.get("factors", "returns"))

    @property
    def rows_per_prediction(self) -> int:
        return len(self.tickers)

    # ------------------------------------------------------------------ the Predictor protocol
    def read_input(
        self, input_file: str | Path | None, dataset: str | None, data_dir: str | Path | None
    ) -> PriceHistory:
        """A long price table (CSV/Parquet) or a folder of per-ticker CSV files, or a dataset."""
        from stgraph.data.sources import open_dataset

        if input_file is not None:
            path = Path(input_file).expanduser().resolve()
            if not path.exists():
                raise InputError(f"{path}: no such file or folder.")
            series = open_dataset(str(path)).series
            files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
            digest = hashlib.sha256()
            for file in files:
                digest.update(file.read_bytes())
            return self.history(series, str(path), digest.hexdigest())
        if dataset is not None:
            series = open_dataset(dataset, data_dir=data_dir).series
            digest = hashlib.sha256(series.values.tobytes()).hexdigest()
            return self.history(series, f"dataset:{dataset}", digest)
        raise InputError("Give recent prices with --input FILE_OR_FOLDER or --dataset NAME.")

    def history(self, series: Series, source: str, sha256: str) -> PriceHistory:
        """``series`` reduced to the model's universe, in its order."""
        if series.calendar != "trading":
            raise InputError(f"{source}: not a daily price table (no trading calendar).")
        index = {t: i for i, t in enumerate(series.node_ids)}
        missing = [t for t in self.tickers if t not in index]
        if missing:
            raise InputError(
                f"{source}: {len(missing)} ticker(s) of the model's universe are absent, e.g. "
                f"{missing[:5]}; the model scores its whole training universe at once."
            )
        panel = StockPanel.of(series).select(np.array([index[t] for t in self.tickers]))
        return PriceHistory(panel, source, sha256, len(index) - len(self.tickers))

    def last_time(self, data: PriceHistory) -> pd.Timestamp:
        return data.panel.series.timestamps[-1]

    def parse_time(self, value: Any, data: PriceHistory, what: str) -> pd.Timestamp:
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise InputError(f"{what} '{value}' is not a date.") from None
        return stamp.tz_localize(None) if stamp.tz is not None else stamp

    def describe_input(self, data: PriceHistory, as_of: Any) -> dict[str, Any]:
        day = self._day(data, as_of)
        observed = data.panel.observed[max(day - self.window + 1, 0) : day + 1]
        metrics = {
            "input_days": data.panel.num_days,
            "input_tickers": len(self.tickers),
            "unknown_tickers": data.unknown_tickers,
            "window_observed_fraction": float(observed.mean()),
        }
        return {"source": data.source, "sha256": data.sha256, "metrics": metrics}

    def predict(self, data: PriceHistory, as_of: Any = None) -> pd.DataFrame:
        """The ranked universe made at ``as_of`` (default: the last trading day of the input)."""
        day = self._day(data, as_of)
        return self.rank(data.panel, day, data.source)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A long price table ``date,ticker,open,high,low,close,volume[,adj_close]`` (any case)."""
        from stgraph.data.adapters.prices import build_price_series, long_price_frames

        frames = long_price_frames(frame, "request")
        series = build_price_series(frames, dict.fromkeys(frames, Path("request")), "request")
        data = self.history(series, "request", "")
        return self.rank(data.panel, data.panel.num_days - 1, "request")

    def realised_errors(self, predictions: pd.DataFrame, data: PriceHistory) -> pd.DataFrame:
        """Past predictions whose scored return is now known: 1 where the direction was wrong."""
        panel = data.panel
        dates = panel.series.timestamps
        column = {t: i for i, t in enumerate(self.tickers)}
        # A job tick on a weekend or holiday repeats the last trading day's table (its runner
        # ticks at fixed intervals): each (as_of, horizon, ticker) is scored once.
        predictions = predictions[~predictions.duplicated(["as_of", "horizon", "ticker"], "last")]
        # A NaN score without a probability is no prediction (a stock suspended at as_of):
        # reading it as "down" would count misses the model never made.
        made = predictions["score"].notna() | predictions["prob_up"].notna()
        table = predictions[predictions["ticker"].astype(str).isin(column) & made]
        as_of = pd.DatetimeIndex(table["as_of"]).tz_localize(None).as_unit("ns")
        day = dates.as_unit("ns").get_indexer(as_of)
        step = day + table["horizon"].to_numpy(np.int64)
        known = (day >= 0) & (step < panel.num_days)
        stock = table["ticker"].astype(str).map(column).to_numpy(np.int64)
        rows = np.flatnonzero(known)
        rows = rows[panel.return_ok[step[rows], stock[rows]]]
        realised_up = panel.returns[step[rows], stock[rows]] > 0
        picked = table.iloc[rows]
        predicted_up = np.where(
            picked["prob_up"].notna(), picked["prob_up"] > 0.5, picked["score"] > 0
        )
        return pd.DataFrame(
            {
                "as_of": picked["as_of"].to_numpy(),
                "horizon": picked["horizon"].to_numpy(),
                "error": (predicted_up != realised_up).astype(np.float64),
            }
        )

    # ------------------------------------------------------------------ scoring
    def _day(self, data: PriceHistory, as_of: Any) -> int:
        dates = data.panel.series.timestamps
        if as_of is None:
            return len(dates) - 1
        stamp = self.parse_time(as_of, data, "--as-of")
        day = int(dates.searchsorted(stamp, side="right")) - 1
        if day < 0:
            raise InputError(f"{data.source}: no trading day on or before {stamp.date()}.")
        following = dates[-1].normalize() + pd.offsets.BDay(1)
        if stamp.normalize() >= following:
            raise InputError(
                f"{data.source} ends on {dates[-1].date()}: no prices up to --as-of "
                f"{stamp.date()} yet (weekday {following.date()} is missing; a stale input would "
                "repeat an old ranking)."
            )
        return day

    def rank(self, panel: StockPanel, day: int, source: str) -> pd.DataFrame:
        """The universe ranked by the signal step, made from the days up to ``day``."""
        state, window = self.state, self.window
        needed = window + max(self.factor_days, 1)  # a return needs the close before it
        if day + 1 < needed:
            factors = f"{state['factors']} factors" if self.factor_days else "first return"
            raise InputError(
                f"{source}: the model needs {needed} trading days up to "
                f"{panel.series.timestamps[day].date()} ({window} in its window and "
                f"{needed - window} before them for its {factors}), found {day + 1}."
            )
        days = np.arange(day - window + 1, day + 1)
        if not panel.observed[day].any():
            raise InputError(f"{source}: no stock traded on {panel.series.timestamps[day].date()}.")
        factors = panel.factors(days, state["factors"], state["zscore"])
        inputs = CrossSectionInputs(
            factors=factors[None],
            returns=torch.from_numpy(panel.returns[days])[None],
            observed=torch.from_numpy(panel.observed[days])[None],
            calendar=self._calendar(panel, days)[None],
            anchor=torch.tensor([day]),
        )
        with torch.no_grad():
            output = self.model(inputs)
        step = self.horizon - 1
        score = output.score[0, step].float().numpy()
        prob_up = np.full(score.shape, np.nan)
        if output.logits is not None:
            prob_up = torch.softmax(output.logits[0, step].float(), -1)[:, 1].numpy()
        score = np.where(panel.observed[day], score, np.nan)  # no trade on a suspended stock
        order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
        return pd.DataFrame(
            {
                "as_of": panel.series.timestamps[day],
                "horizon": self.horizon,
                "rank": np.arange(1, len(order) + 1),
                "ticker": np.asarray(self.tickers, dtype=object)[order],
                "score": score[order].astype(np.float64),
                "prob_up": prob_up[order].astype(np.float64),
            }
        )

    def _calendar(self, panel: StockPanel, days: np.ndarray) -> torch.Tensor:
        """Codes of the input days and of the next ``horizon`` trading days (weekdays after the
        last day: the exchange's holidays are not known here)."""
        if self.state["calendar"] == "synthetic":
            return synthetic_calendar(np.arange(days[0], days[-1] + self.horizon + 1))
        stamps = panel.series.timestamps[days]
        future = pd.bdate_range(stamps[-1] + pd.offsets.BDay(1), periods=self.horizon)
        both = stamps.append(future)
        return torch.from_numpy(np.stack([both.dayofweek, both.month - 1], axis=1).astype(np.int64))
