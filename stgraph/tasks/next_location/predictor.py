"""A trained next-location model ready to serve: users' recent check-ins in, each user's top
locations for their next check-in out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stgraph.errors import InputError
from stgraph.tasks.base import Predictor
from stgraph.tasks.next_location.batch import NextLocationInputs
from stgraph.tasks.next_location.samples import time_features

COLUMNS = ("user", "timestamp", "location")
USERS_PER_CALL = 256  # users scored in one forward pass


@dataclass
class CheckinHistory:
    """Recent check-ins of the users the model knows, sorted by user, then time.

    ``frame`` columns: ``user`` and ``location`` (the model's ids; location -1 where unknown:
    not model input, but still a user's next check-in when past predictions are scored),
    ``category`` (model id, 0 where unknown), ``time`` (naive, on the model's clock),
    ``user_name`` and ``location_name`` (the original names)."""

    frame: pd.DataFrame
    source: str
    sha256: str
    rows: int  # rows read
    unknown_user_rows: int  # rows of users the model was not trained on (skipped)
    unknown_location_rows: int  # rows at locations the model was not trained on


class NextLocationPredictor(Predictor):
    """Ranks every known location for each user's next check-in, with the vocabularies the task
    exported (`NextLocationTask.export`).

    Rows of the prediction table: ``as_of`` (the user's last check-in used), ``user``,
    ``horizon`` (always 1: the next check-in), ``rank`` (1 = likeliest), ``location`` and the
    model's ``score``. `realised_errors` scores a prediction once the user's next check-in is
    known: ``error`` is ``1 - hit@1`` (0 when the top location was right, else 1).
    """

    error_name = "miss@1"

    id_columns = ("user", "location")

    def __init__(self, state: dict[str, Any], model: torch.nn.Module) -> None:
        self.state = state
        self.model = model.eval()
        self.locations = np.asarray(state["locations"], dtype=object)
        self.user_ids = pd.Index(state["users"], dtype=object)
        self.location_ids = pd.Index(state["locations"], dtype=object)
        self.category_ids = pd.Index(state["categories"], dtype=object)
        known = state.get("location_category")
        self.location_category = None if known is None else np.asarray(known, dtype=np.int64)
        # Never-trained locations (the unknown entry) are never served (old bundles: none).
        self.unseen = torch.zeros(len(self.locations), dtype=torch.bool)
        self.unseen[state.get("unseen", [])] = True
        self.top_k = min(int(state["top_k"]), int((~self.unseen).sum()))
        self.clock = state.get("clock", "local")
        self._users_read = 0

    @property
    def rows_per_prediction(self) -> int:
        """``top_k`` rows per user with a usable check-in in the input read last."""
        return self.top_k * self._users_read

    # ------------------------------------------------------------------ the Predictor protocol
    def read_input(
        self, input_file: str | Path | None, dataset: str | None, data_dir: str | Path | None
    ) -> CheckinHistory:
        """A CSV or Parquet file with columns ``user,timestamp,location[,category]`` (original
        names), or a dataset's check-ins."""
        if input_file is not None:
            path = Path(input_file).expanduser().resolve()
            frame = _read_table(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            history = self.checkins(frame, str(path), digest)
        elif dataset is not None:
            from stgraph.data.checkins import open_checkins

            log = open_checkins(dataset, data_dir)
            time = log.time
            if self.clock == "utc" and log.utc_offset_minutes is not None:
                time = time - log.utc_offset_minutes.astype("timedelta64[m]")
            frame = pd.DataFrame(
                {
                    "user": np.asarray(log.users, dtype=object)[log.user],
                    "timestamp": time,
                    "location": np.asarray(log.locations, dtype=object)[log.location],
                }
            )
            if log.category is not None and log.num_categories:
                frame["category"] = np.asarray(log.categories, dtype=object)[log.category]
            digest = hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes())
            history = self.checkins(frame, f"dataset:{dataset}", digest.hexdigest())
        else:
            raise InputError("Give the recent check-ins with --input FILE or --dataset NAME.")
        self._users_read = int(history.frame.loc[history.frame["location"] >= 0, "user"].nunique())
        return history

    def last_time(self, data: CheckinHistory) -> pd.Timestamp:
        return pd.Timestamp(data.frame["time"].max())

    def parse_time(self, value: Any, data: CheckinHistory, what: str) -> pd.Timestamp:
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise InputError(f"{what} '{value}' is not a timestamp.") from None
        return stamp if stamp.tz is None else self._naive(pd.Series([stamp])).iat[0]

    def describe_input(self, data: CheckinHistory, as_of: Any) -> dict[str, Any]:
        frame = data.frame
        metrics = {
            "input_rows": data.rows,
            "input_users": int(frame["user"].nunique()),
            "unknown_user_rows": data.unknown_user_rows,
            "unknown_location_rows": data.unknown_location_rows,
        }
        return {"source": data.source, "sha256": data.sha256, "metrics": metrics}

    def predict(self, data: CheckinHistory, as_of: Any = None) -> pd.DataFrame:
        """The top locations of each user's next check-in after their last one up to ``as_of``
        (default: every check-in of the input)."""
        frame = data.frame[data.frame["location"] >= 0]
        if as_of is not None:
            frame = frame[frame["time"] <= self.parse_time(as_of, data, "--as-of")]
        if frame.empty:
            upto = "" if as_of is None else f" up to {as_of}"
            raise InputError(
                f"{data.source}: no check-in of a known user at a known location{upto}; the "
                "model knows only the users and locations it was trained on."
            )
        return self.rank_locations(frame)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A request table ``user,timestamp,location[,category]`` (MLflow pyfunc)."""
        return self.predict(self.checkins(frame, "request", ""))

    def realised_errors(self, predictions: pd.DataFrame, data: CheckinHistory) -> pd.DataFrame:
        """``1 - hit@1`` of each past prediction whose user has checked in since its ``as_of``
        (a next check-in at a location the model does not know is a miss)."""
        top = predictions[predictions["rank"] == 1][["as_of", "horizon", "user", "location"]]
        top = top.assign(
            as_of=pd.to_datetime(top["as_of"]).astype("datetime64[ns]"),
            user=top["user"].astype(str),
        ).sort_values("as_of")
        actual = data.frame[["user_name", "time", "location_name"]].rename(
            columns={"user_name": "user", "location_name": "actual"}
        )
        actual = actual.assign(time=actual["time"].astype("datetime64[ns]")).sort_values("time")
        joined = pd.merge_asof(
            top,
            actual,
            left_on="as_of",
            right_on="time",
            by="user",
            direction="forward",
            allow_exact_matches=False,
        ).dropna(subset=["actual"])
        joined["error"] = (joined["location"].astype(str) != joined["actual"]).astype(float)
        return joined[["as_of", "horizon", "error"]].reset_index(drop=True)

    # ------------------------------------------------------------------ ranking
    def checkins(self, frame: pd.DataFrame, source: str, sha256: str) -> CheckinHistory:
        """Validate a check-in table and map its names to the model's ids.

        Raises:
            InputError: a missing column, an empty value, a timestamp that does not parse, or
                no row of a user the model knows.
        """
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(
                f"{source}: missing column(s) {missing}; expected {','.join(COLUMNS)}"
                "[,category] with the original user and location names."
            )
        empty = [c for c in COLUMNS if frame[c].isna().any()]
        if empty:
            raise InputError(f"{source}: empty values in column(s) {empty}.")
        try:
            time = self._naive(pd.to_datetime(frame["timestamp"]))
        except (ValueError, TypeError) as exc:
            raise InputError(f"{source}: column timestamp does not parse ({exc}).") from None
        user_name = frame["user"].astype(str).to_numpy()
        location_name = frame["location"].astype(str).to_numpy()
        user = self.user_ids.get_indexer(user_name).astype(np.int64)  # -1: unknown
        location = self.location_ids.get_indexer(location_name).astype(np.int64)
        category = np.full(len(frame), -1, dtype=np.int64)
        if "category" in frame.columns and len(self.category_ids):
            names = frame["category"].astype(str).to_numpy()
            category = self.category_ids.get_indexer(names).astype(np.int64)
        if self.location_category is not None:  # unknown or absent: the training category
            fallback = np.where(location >= 0, self.location_category[location.clip(0)], -1)
            category = np.where(category >= 0, category, fallback)
        known = user >= 0
        if not known.any():
            raise InputError(
                f"{source}: none of the {len(frame)} rows is of a user the model was trained on "
                f"(e.g. {list(dict.fromkeys(user_name))[:3]})."
            )
        table = pd.DataFrame(
            {
                "user": user,
                "location": location,
                "category": category.clip(0),
                "time": time.to_numpy(dtype="datetime64[ns]"),
                "user_name": user_name,
                "location_name": location_name,
            }
        )[known]
        table = table.sort_values(["user", "time"], kind="stable").reset_index(drop=True)
        return CheckinHistory(
            frame=table,
            source=source,
            sha256=sha256,
            rows=len(frame),
            unknown_user_rows=int((~known).sum()),
            unknown_location_rows=int((known & (location < 0)).sum()),
        )

    def rank_locations(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The table of `predict` for known check-ins ``frame`` (sorted by user, then time)."""
        user = frame["user"].to_numpy()
        time = frame["time"].to_numpy()
        hour, weekday, gap = time_features(time, user)
        columns = {
            "location": frame["location"].to_numpy(),
            "category": frame["category"].to_numpy(),
            "hour": hour,
            "weekday": weekday,
            "gap_hours": gap,
        }
        users, start, count = np.unique(user, return_index=True, return_counts=True)
        scores, ids = [], []
        for first in range(0, len(users), USERS_PER_CALL):
            rows = slice(first, first + USERS_PER_CALL)
            inputs = _rows(columns, users[rows], start[rows], count[rows])
            with torch.no_grad():
                output = self.model(inputs.to(_device(self.model)))
            scores_all = output.location.float().masked_fill(self.unseen, -torch.inf)
            top = scores_all.topk(self.top_k, dim=1)
            scores.append(top.values.cpu().numpy())
            ids.append(top.indices.cpu().numpy())
        k = self.top_k
        last = time[start + count - 1]
        return pd.DataFrame(
            {
                "as_of": np.repeat(last, k),
                "user": np.repeat(frame["user_name"].to_numpy()[start], k),
                "horizon": np.ones(len(users) * k, dtype=np.int64),
                "rank": np.tile(np.arange(1, k + 1), len(users)),
                "location": self.locations[np.concatenate(ids).reshape(-1)].astype(str),
                "score": np.concatenate(scores).reshape(-1).astype(np.float64),
            }
        )

    def _naive(self, stamps: pd.Series) -> pd.Series:
        """Zoned timestamps on the model's clock: UTC, or local wall time (tz dropped)."""
        if getattr(stamps.dt, "tz", None) is None:
            return stamps
        if self.clock == "utc":
            stamps = stamps.dt.tz_convert("UTC")
        return stamps.dt.tz_localize(None)


def _rows(
    columns: dict[str, np.ndarray], users: np.ndarray, start: np.ndarray, count: np.ndarray
) -> NextLocationInputs:
    """One row per user (all its check-ins), each queried after its last check-in."""
    width = int(count.max())
    steps = np.arange(width)
    valid = steps[None, :] < count[:, None]
    grid = np.where(valid, start[:, None] + steps, 0)
    per_step = {
        name: torch.from_numpy(np.where(valid, values[grid], 0).astype(values.dtype))
        for name, values in columns.items()
    }
    return NextLocationInputs(
        **per_step,
        user=torch.from_numpy(users.astype(np.int64)),
        lengths=torch.from_numpy(count.astype(np.int64)),
        query_row=torch.arange(len(users)),
        query_pos=torch.from_numpy((count - 1).astype(np.int64)),
    )


def _device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"Input {path} does not exist.")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"user": str, "location": str, "category": str})
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as exc:  # unreadable: not CSV/Parquet, truncated, bad encoding
        raise InputError(f"Input {path} cannot be read: {exc}") from None
    raise InputError(f"Input {path}: unknown extension; use .csv or .parquet.")
