"""The model bundle: one file with everything needed to forecast from recent history.

It holds the model name, config and weights, the dataset facts the model was built for (node ids
and order, frequency, window, horizon, channels, null rule), the train-only scaler and the graph.
MLflow logs it as a pyfunc model; `Forecaster` loads it anywhere without the training data.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stgraph.atomic import atomic_write
from stgraph.data.adapters.base import observed_mask
from stgraph.data.scaler import StandardScaler
from stgraph.data.windows import calendar_features
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.models.base import ForecastModel, ModelContext, build_model
from stgraph.tasks.forecast import ForecastBatch, ForecastTask

FORMAT_VERSION = 1


def save_bundle(
    path: Path,
    task: ForecastTask,
    model: ForecastModel,
    model_name: str,
    model_params: dict[str, Any],
    null_value: str,
) -> None:
    series = task.series
    context = model.context
    bundle = {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_params": model_params,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "context": {k: v for k, v in asdict(context).items() if k not in ("graph", "coords")},
        "coords": context.coords,
        "graph": {
            "edge_index": task.graph.edge_index,
            "edge_weight": task.graph.edge_weight,
            "num_nodes": task.graph.num_nodes,
        },
        "scaler": task.scaler.state_dict(),
        "dataset": series.name,
        "node_ids": list(series.node_ids),
        "channels": list(series.channels),
        "num_targets": task.num_targets,
        "freq": str(pd.tseries.frequencies.to_offset(series.freq).freqstr),
        "null_value": null_value,
    }
    atomic_write(path, lambda handle: torch.save(bundle, handle))


class Forecaster:
    """A trained model ready to forecast from recent history."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle
        graph = Graph(**bundle["graph"])
        self.context = ModelContext(**bundle["context"], graph=graph, coords=bundle["coords"])
        self.model = build_model(bundle["model_name"], bundle["model_params"], self.context)
        self.model.load_state_dict(bundle["state_dict"])
        self.model.eval()
        self.scaler = StandardScaler.from_state_dict(bundle["scaler"])
        self.node_ids: list[str] = bundle["node_ids"]
        self.freq = pd.Timedelta(pd.tseries.frequencies.to_offset(bundle["freq"]))

    @classmethod
    def load(cls, path: Path | str) -> Forecaster:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"Model bundle {path} does not exist.")
        try:
            bundle = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # truncated or not a torch file: unpickling errors vary
            raise InputError(f"Model bundle {path} cannot be read: {exc}") from exc
        if not isinstance(bundle, dict) or bundle.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path} is not a stgraph model bundle of format {FORMAT_VERSION}.")
        try:
            return cls(bundle)
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or reshaped weights
            reason = " ".join(line.strip() for line in str(exc).splitlines())[:500]
            raise InputError(
                f"Model bundle {path}: its weights do not fit model '{bundle['model_name']}' "
                f"of this stgraph version (saved by an older one?); refit it. {reason}"
            ) from exc

    @property
    def window(self) -> int:
        return self.context.window

    @property
    def horizon(self) -> int:
        return self.context.horizon

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
        mask = observed_mask(values, self.bundle["null_value"], source, allow_nonfinite=True)
        x = torch.from_numpy(np.where(mask, values, 0.0).astype(np.float32))[None]
        x_mask = torch.from_numpy(mask)[None]
        x = torch.where(x_mask, self.scaler.transform(x), 0.0)
        stamps = window.index
        future = pd.date_range(stamps[-1] + self.freq, periods=self.horizon, freq=self.freq)
        x_tod, x_dow = calendar_features(stamps)
        y_tod, y_dow = calendar_features(future)
        n, k = len(self.node_ids), self.bundle["num_targets"]
        batch = ForecastBatch(
            x=x,
            x_mask=x_mask,
            x_tod=torch.from_numpy(x_tod)[None],
            x_dow=torch.from_numpy(x_dow)[None],
            y_tod=torch.from_numpy(y_tod)[None],
            y_dow=torch.from_numpy(y_dow)[None],
            y=torch.zeros(1, self.horizon, n, k),
            y_mask=torch.zeros(1, self.horizon, n, k, dtype=torch.bool),
            anchor=torch.zeros(1, dtype=torch.long),
        )
        with torch.no_grad():
            output = self.model(batch)[:, : self.horizon]
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
