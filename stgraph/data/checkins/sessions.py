"""`Sessions`: an event log cut into per-user sessions, each assigned to a split.

A sample of the next-location task is one session: the user's earlier check-ins predict the
session's last location. Sessions are cut by a rule (ISO week, or a gap of hours) or taken from
the source (a trajectory id), and split per user in time order: the first session is history
only; of the rest, the last ones are test, the one(s) before them validation, the others train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stgraph.data.events import EventLog
from stgraph.data.views import TrainView

HISTORY, TRAIN, VAL, TEST = -1, 0, 1, 2
SPLITS = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass(frozen=True)
class Sessions:
    """Sessions over ``log`` (whose events are sorted by user, then time).

    Attributes:
        log: the filtered, merged event log.
        bounds: ``[K + 1]`` int64: session ``k`` is events ``bounds[k]:bounds[k + 1]``; sessions
            of one user are consecutive and in time order, users in id order.
        user: ``[K]`` int64 user of each session.
        split: ``[K]`` int8 `HISTORY`, `TRAIN`, `VAL` or `TEST`.
    """

    log: EventLog
    bounds: np.ndarray
    user: np.ndarray
    split: np.ndarray

    @property
    def num_sessions(self) -> int:
        return len(self.user)

    def samples(self, split: str) -> np.ndarray:
        """Ids of the sessions of ``split`` (``train``, ``val`` or ``test``), in order."""
        return np.flatnonzero(self.split == SPLITS[split])

    def counts(self) -> dict[str, int]:
        """Users, locations, categories, events and sessions per split (for cards and MLflow)."""
        log = self.log
        counts = {
            "users": len(np.unique(log.user)),
            "locations": log.num_locations,
            "categories": log.num_categories,
            "events": log.num_events,
            "sessions": self.num_sessions,
        }
        for name, code in {"history": HISTORY, **SPLITS}.items():
            counts[f"{name}_sessions"] = int((self.split == code).sum())
        return counts

    def describe(self) -> dict[str, Any]:
        """`counts` plus check-ins per split, the mean session length, the check-ins at the
        unknown location (validation and test ones outside the training vocabulary), and the
        preprocessing record that `make_sessions` left in ``log.attrs`` (for the dataset card
        and MLflow)."""
        per_event = np.repeat(self.split, np.diff(self.bounds))
        description: dict[str, Any] = dict(self.counts())
        for name, code in {"history": HISTORY, **SPLITS}.items():
            description[f"{name}_events"] = int((per_event == code).sum())
        lengths = np.diff(self.bounds)
        description["mean_session_length"] = float(lengths.mean()) if len(lengths) else 0.0
        if "unknown_location" in self.log.attrs:
            unknown = self.log.location == self.log.attrs["unknown_location"]
            description["unknown_events"] = int(unknown.sum())
        for key in ("clock", "preprocess", "stages"):
            if key in self.log.attrs:
                description[key] = self.log.attrs[key]
        return description

    def train_view(self) -> CheckinTrainView:
        """The check-ins of history and train sessions only."""
        per_event = np.repeat(self.split, np.diff(self.bounds))
        keep = (per_event == HISTORY) | (per_event == TRAIN)
        return CheckinTrainView(self.log.take(keep))


@dataclass(frozen=True)
class CheckinTrainView(TrainView):
    """The training check-ins: every event of a history or train session, nothing after a
    user's last train session. Graphs, location priors and model statistics read only this."""

    log: EventLog
