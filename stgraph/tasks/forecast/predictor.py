"""A trained forecast model ready to serve: recent history in, the next ``horizon`` steps out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stgraph.data.adapters.base import observed_mask
from stgraph.data.scaler import StandardScaler
from stgraph.data.windows import calendar_features
from stgraph.errors import InputError
from stgraph.tasks.base import Predictor
from stgraph.tasks.forecast.batch import ForecastInputs
from stgraph.tasks.forecast.history import (
    History,
    load_history,
    parse_timestamp,
    resolve_as_of,
)


class Forecaster(Predictor):
    """Forecasts with ``model`` from recent history, with the facts the task exported
    (`ForecastTask.export`): node ids and order, frequency, window, horizon, null rule, the
    train-only scaler."""

    id_columns = ("node",)

    def __init__(self, state: dict[str, Any], model: torch.nn.Module) -> None:
        self.state = state
        self.model = model.eval()
        self.scaler = StandardScaler.from_state_dict(state["scaler"])
        self.node_ids: list[str] = state["node_ids"]
        self.window: int = state["window"]
        self.horizon: int = state["horizon"]
        self.null_value: str = state["null_value"]
        self.freq = pd.Timedelta(pd.tseries.frequencies.to_offset(state["freq"]))

    @property
    def rows_per_prediction(self) -> int:
        return self.horizon * len(self.node_ids)

    # ------------------------------------------------------------------ the Predictor protocol
    def read_input(
        self, input_file: str | Path | None, dataset: str | None, data_dir: str | Path | None
    ) -> History:
        return load_history(self, input_file, dataset, data_dir)

    def last_time(self, data: History) -> pd.Timestamp:
        return pd.DatetimeIndex(data.wide.index)[-1]

    def parse_time(self, value: Any, data: History, what: str) -> pd.Timestamp:
        return parse_timestamp(value, data, what)

    def describe_input(self, data: History, as_of: Any) -> dict[str, Any]:
        window = data.wide.loc[:as_of].iloc[-self.window :]
        metrics = {
            "input_rows": data.rows,
            "input_nodes": data.wide.shape[1],
            "window_observed_fraction": float(window.notna().to_numpy().mean()),
        }
        return {"source": data.source, "sha256": data.sha256, "metrics": metrics}

    def predict(self, data: History, as_of: Any = None) -> pd.DataFrame:
        """``as_of, timestamp, node, horizon, value`` for the steps after ``as_of``.

        Raises:
            InputError: too little history before ``as_of``, or a window without any reading.
        """
        stamp = resolve_as_of(data, as_of)
        window = data.wide.loc[:stamp].iloc[-self.window :]
        if len(window) == self.window and window.isna().all().all():
            raise InputError(
                f"{data.source}: no observed reading in the {self.window} steps up to "
                f"{stamp}; the model would forecast from nothing."
            )
        table = self.forecast(data.wide, as_of=stamp, source=data.source)
        table.insert(0, "as_of", stamp)
        return table

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A long (``timestamp, node, value``) or wide (``timestamp`` + node columns) request."""
        return self.forecast(to_wide(frame), source="request")

    def realised_errors(self, predictions: pd.DataFrame, data: History) -> pd.DataFrame:
        actual = data.wide.stack().rename("actual").reset_index()  # NaN (missing) rows drop
        actual.columns = ["timestamp", "node", "actual"]
        tz = pd.DatetimeIndex(data.wide.index).tz
        predictions = predictions.copy()
        for column in ("timestamp", "as_of"):
            stamps = pd.DatetimeIndex(predictions[column])
            if (stamps.tz is None) != (tz is None):
                stamps = stamps.tz_localize(tz) if tz is not None else stamps.tz_localize(None)
            predictions[column] = stamps.as_unit("ns")
        actual["timestamp"] = pd.DatetimeIndex(actual["timestamp"]).as_unit("ns")
        predictions["node"] = predictions["node"].astype(str)
        joined = predictions.merge(actual, on=["timestamp", "node"], how="inner")
        joined["error"] = (joined["value"] - joined["actual"]).abs()
        return joined[["as_of", "horizon", "error"]]

    # ------------------------------------------------------------------ forecasting
    def forecast(
        self, history: pd.DataFrame, as_of: pd.Timestamp | None = None, source: str = "input"
    ) -> pd.DataFrame:
        """Forecast the horizon after ``as_of`` from a wide history table.

        Args:
            history: index = timestamps, columns = node ids (the training order is restored by
                name); missing readings as the dataset card defines them.
            as_of: the last timestamp to use (default: the last one in ``history``).
            source: name of the input in error messages.

        Returns:
            A long table ``timestamp, node, horizon, value`` (horizon 1 = one step after as_of).
        """
        window = self._window(history, as_of, source)
        values = window.to_numpy(dtype=np.float32)[:, :, None]
        mask = observed_mask(values, self.null_value, source, allow_nonfinite=True)
        x = torch.from_numpy(np.where(mask, values, 0.0).astype(np.float32))[None]
        x_mask = torch.from_numpy(mask)[None]
        x = torch.where(x_mask, self.scaler.transform(x), 0.0)
        stamps = window.index
        future = pd.date_range(stamps[-1] + self.freq, periods=self.horizon, freq=self.freq)
        x_tod, x_dow = calendar_features(stamps)
        y_tod, y_dow = calendar_features(future)
        inputs = ForecastInputs(
            x=x,
            x_mask=x_mask,
            x_tod=torch.from_numpy(x_tod)[None],
            x_dow=torch.from_numpy(x_dow)[None],
            y_tod=torch.from_numpy(y_tod)[None],
            y_dow=torch.from_numpy(y_dow)[None],
            anchor=torch.zeros(1, dtype=torch.long),
        )
        with torch.no_grad():
            output = self.model(inputs)[:, : self.horizon]
        k, n = self.state["num_targets"], len(self.node_ids)
        prediction = self.scaler.inverse(output, slice(0, k))[0, :, :, 0].numpy()  # [H, N]
        return pd.DataFrame(
            {
                "timestamp": np.repeat(future, n),
                "node": np.tile(np.asarray(self.node_ids, dtype=object), self.horizon),
                "horizon": np.repeat(np.arange(1, self.horizon + 1), n),
                "value": prediction.reshape(-1).astype(np.float64),
            }
        )

    def _window(
        self, history: pd.DataFrame, as_of: pd.Timestamp | None, source: str
    ) -> pd.DataFrame:
        if not isinstance(history.index, pd.DatetimeIndex):
            raise InputError(f"{source}: the history must be indexed by timestamps.")
        missing = [node for node in self.node_ids if node not in history.columns]
        extra = [c for c in history.columns if c not in set(self.node_ids)]
        if missing or extra:
            raise InputError(
                f"{source}: node ids differ from the model's training data "
                f"({len(missing)} missing, e.g. {missing[:3]}; "
                f"{len(extra)} unknown, e.g. {extra[:3]})."
            )
        if not history.index.is_monotonic_increasing or history.index.has_duplicates:
            raise InputError(f"{source}: timestamps must be strictly increasing.")
        if as_of is not None:
            history = history.loc[: pd.Timestamp(as_of)]
        window = history.iloc[-self.window :][self.node_ids]
        if len(window) < self.window:
            raise InputError(
                f"{source}: the model needs {self.window} steps of history up to "
                f"{as_of or 'the last timestamp'}, found {len(window)}."
            )
        steps = np.diff(window.index.as_unit("ns").asi8)  # pandas 3 may hold us or s
        if (steps != self.freq.value).any():
            raise InputError(
                f"{source}: the last {self.window} timestamps are not spaced at the model's "
                f"frequency {self.freq} (found gaps of "
                f"{sorted(set(pd.to_timedelta(steps).astype(str)))})."
            )
        return window


def to_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Long (``timestamp,node,value``) or wide (``timestamp`` + node columns) -> wide, indexed by
    timestamp, columns as strings."""
    if {"timestamp", "node", "value"} <= set(frame.columns) and frame.shape[1] == 3:
        frame = frame.assign(node=frame["node"].astype(str))
        wide = frame.pivot(index="timestamp", columns="node", values="value")
    else:
        wide = frame.set_index("timestamp") if "timestamp" in frame.columns else frame
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index))
    wide.columns = [str(c) for c in wide.columns]
    return wide.sort_index()
