"""`EventLog`: check-ins (or any user events at places), the columnar data form of mobility.

Beside `Series` (a regular grid of readings per node), an event log is a list of irregular events:
who, when (in local time, the time of day that matters to human routines), where, and optionally
the kind of place and its coordinates. Columns are numpy arrays of one length, sorted by user and
then time; places and users are dense integer ids with their original names kept beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EventLog:
    """Events sorted by ``(user, time)``.

    Attributes:
        user: ``[E]`` int64 user id in ``[0, len(users))``.
        time: ``[E]`` datetime64[s] local time of the event (the venue's clock).
        location: ``[E]`` int64 location id in ``[0, len(locations))``.
        users: ``[U]`` original user ids (strings).
        locations: ``[L]`` original location ids (strings).
        category: ``[E]`` int64 category id in ``[0, len(categories))`` or None if the source
            has no categories.
        categories: ``[C]`` category names (empty without categories).
        coords: ``[L, 2]`` float64 latitude and longitude of each location in degrees, or None.
        utc_offset_minutes: ``[E]`` int32 offset of local time from UTC, or None where the
            source gives local time only (UTC time is ``time - offset``).
        session: ``[E]`` int64 session id given by the source (e.g. a trajectory id), or None
            when sessions are cut by a rule (`stgraph.data.checkins.CheckinConfig`).
        week_only: True when the source gives weekday and hour but no dates: ``time`` then
            places a user's k-th session (in the source's order) in the k-th week after
            1970-01-05, a Monday, so weekday and hour are real and the dates are not.
        name: the data's name for messages.
        attrs: provenance and counts for the dataset card and MLflow.
    """

    user: np.ndarray
    time: np.ndarray
    location: np.ndarray
    users: np.ndarray
    locations: np.ndarray
    category: np.ndarray | None = None
    categories: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    coords: np.ndarray | None = None
    utc_offset_minutes: np.ndarray | None = None
    session: np.ndarray | None = None
    week_only: bool = False
    name: str = "events"
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))

    def _problems(self):
        n = len(self.user)
        if self.time.dtype.kind != "M":
            yield f"time must be datetime64, got {self.time.dtype}"
        for column in ("time", "location", "category", "utc_offset_minutes", "session"):
            values = getattr(self, column)
            if values is not None and len(values) != n:
                yield f"column {column} has {len(values)} rows, user has {n}"
        for column, vocabulary in (
            ("user", self.users),
            ("location", self.locations),
            ("category", self.categories),
        ):
            values = getattr(self, column)
            if values is not None and n and (values.min() < 0 or values.max() >= len(vocabulary)):
                yield f"{column} ids must lie in [0, {len(vocabulary)})"
        if self.coords is not None and self.coords.shape != (len(self.locations), 2):
            yield f"coords must be [{len(self.locations)}, 2], got {list(self.coords.shape)}"
        if n > 1 and len(self.time) == n:
            key_user, key_time = self.user[1:], self.time[1:]
            unsorted = (key_user < self.user[:-1]) | (
                (key_user == self.user[:-1]) & (key_time < self.time[:-1])
            )
            if unsorted.any():
                yield "events must be sorted by user, then time"

    @property
    def num_events(self) -> int:
        return len(self.user)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_locations(self) -> int:
        return len(self.locations)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def take(self, rows: np.ndarray) -> EventLog:
        """The events at ``rows`` (a boolean mask or sorted indices), vocabularies unchanged."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return EventLog(
            user=self.user[rows],
            time=self.time[rows],
            location=self.location[rows],
            users=self.users,
            locations=self.locations,
            category=pick(self.category),
            categories=self.categories,
            coords=self.coords,
            utc_offset_minutes=pick(self.utc_offset_minutes),
            session=pick(self.session),
            week_only=self.week_only,
            name=self.name,
            attrs=dict(self.attrs),
        )
