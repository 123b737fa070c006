"""`make_sessions`: merge check-ins, cut them into sessions, split each user's sessions in time
order, then filter users and locations and build the vocabularies (the HGARN preprocessing, see
`CheckinConfig`).

Leakage: by default the user and location filters and the vocabularies count only the training
side of the split (`stgraph.data.checkins.vocabulary`); validation and test check-ins at
locations outside it map to one unknown location, scored as a miss. ``faithful_vocabulary``
restores the official order (filters on all check-ins first), where a location that occurs only
in validation or test sessions stays in the vocabulary, unseen in training. Everything *learned*
from check-ins (location priors, graphs, model statistics) is computed from
`Sessions.train_view` only, in both modes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stgraph.data.checkins.config import CheckinConfig
from stgraph.data.checkins.sessions import HISTORY, TEST, TRAIN, VAL, Sessions
from stgraph.data.checkins.vocabulary import training_vocabulary
from stgraph.data.events import EventLog
from stgraph.errors import InputError

_MONDAY = 4  # 1970-01-05, day 4 of the epoch, is a Monday: weeks are floor((day - 4) / 7)


def make_sessions(log: EventLog, config: CheckinConfig | None = None) -> Sessions:
    """Merge, sessionise, split and filter ``log``; ids are re-indexed densely at the end.

    Order (each step on the output of the previous one, all vectorised):

    1. ``merge_repeats="same-day"``: drop a check-in with the same user, location and local
       day as the one just before it (the first one stays).
    2. Cut sessions (``session``: ISO week of the local date, a gap of ``gap_hours``, or the
       source's ids); drop sessions with fewer than ``min_session_records`` check-ins, then
       users with fewer than ``min_sessions_per_user`` sessions.
    3. Per user, in time order: the first session is `HISTORY`; the last
       ``ceil(test_ratio * (n - 1))`` (at least 1) are `TEST`, the ``val_sessions`` before them
       `VAL`, the rest `TRAIN`.
    4. `training_vocabulary`: the user filter (``min_user_records``) and the location filter
       (``min_location_records``, ``keep_repeat_locations``) count history and train
       check-ins only and remove only those (and training sessions left too short, and users
       left without a train session); the vocabularies are the training locations and
       categories, plus one unknown entry for what validation and test hold beyond them.

    With ``faithful_vocabulary`` (the official HGARN order) the filters come first, on all
    check-ins: users and locations with more than ``min_user_records`` /
    ``min_location_records`` check-ins; then merging; then the same counts again on the merged
    check-ins, where ``keep_repeat_locations`` also keeps a user's check-ins at a location this
    user visited more than once (not iterated further, as in the official code); then steps 2
    and 3, and dense ids over what remains.

    With ``clock="utc"`` the times are first turned into UTC (``time - utc_offset``), so days,
    weeks and the hours models read are UTC, as in the official HGARN code.

    ``sessions.log.attrs`` gains ``preprocess`` (the config, with the session rule resolved)
    and ``stages`` (users, locations and check-ins after each step).

    Raises:
        InputError: a step removes every check-in (naming the step and the setting to lower),
            or the config asks for what the data lacks (source sessions, UTC offsets).
    """
    config = config or CheckinConfig()
    rule = config.session
    if rule == "auto":  # the card's rule, else the source's sessions where there are some
        rule = log.attrs.get("default_session") or (
            "source" if log.session is not None else "iso-week"
        )
    if rule == "source" and log.session is None:
        raise InputError(
            f"{log.name}: session='source' needs sessions given by the data (trajectory ids); "
            "this data has none. Use session: iso-week or gap."
        )
    if config.clock == "utc":
        log = _to_utc(log)
    stages = {"input": _stage(log)}

    faithful = config.faithful_vocabulary
    if faithful:
        log = _first_filter(log, config)
        stages["first_filter"] = _stage(log)
    # weight: how many input check-ins each one stands for (itself and those merged into it).
    weight = np.ones(log.num_events, dtype=np.int64)
    if config.merge_repeats == "same-day":
        day = log.time.astype("datetime64[D]")
        repeat = np.zeros(log.num_events, dtype=bool)
        repeat[1:] = (
            (log.user[1:] == log.user[:-1])
            & (log.location[1:] == log.location[:-1])
            & (day[1:] == day[:-1])
        )
        weight = np.bincount(np.cumsum(~repeat) - 1)
        log = log.take(~repeat)
    stages["merged"] = _stage(log)
    if faithful:
        log = _second_filter(log, config)
        stages["second_filter"] = _stage(log)
        weight = np.ones(log.num_events, dtype=np.int64)  # not read in this order
    session = _session_ids(log, rule, config.gap_hours)
    size = np.bincount(session)
    log, session, weight = _keep(
        log,
        session,
        weight,
        size[session] >= config.min_session_records,
        "min_session_records",
        config.min_session_records,
    )
    per_user = np.bincount(log.user[_starts(session)], minlength=log.num_users)
    log, session, weight = _keep(
        log,
        session,
        weight,
        per_user[log.user] >= config.min_sessions_per_user,
        "min_sessions_per_user",
        config.min_sessions_per_user,
    )
    stages["sessions"] = _stage(log)

    split = _split(log.user[_starts(session)], config)
    if faithful:
        log = _compact(log)
    else:
        log, session, split = training_vocabulary(log, session, split, weight, config)
        stages["train_filter"] = _stage(log)
    bounds = np.r_[_starts(session), log.num_events]
    resolved = {**dataclasses.asdict(config), "session": rule}
    log.attrs.update(preprocess=resolved, stages=stages)
    if config.clock == "utc":
        log.attrs["clock"] = "utc"
    user = log.user[bounds[:-1]]
    return Sessions(log=log, bounds=bounds.astype(np.int64), user=user, split=split)


def _starts(session: np.ndarray) -> np.ndarray:
    """The index of each session's first check-in."""
    return np.flatnonzero(np.r_[True, session[1:] != session[:-1]])


def _stage(log: EventLog) -> dict[str, int]:
    return {
        "users": len(np.unique(log.user)),
        "locations": len(np.unique(log.location)),
        "events": log.num_events,
    }


def _to_utc(log: EventLog) -> EventLog:
    if log.utc_offset_minutes is None:
        raise InputError(
            f"{log.name}: clock='utc' needs UTC offsets, and this data has none (its times are "
            f"{log.attrs.get('clock', 'local')}). Use clock: local."
        )
    utc = log.time - log.utc_offset_minutes.astype("timedelta64[m]")
    order = np.lexsort((np.arange(log.num_events), utc, log.user))
    pick = lambda a: None if a is None else a[order]  # noqa: E731
    return dataclasses.replace(
        log,
        user=log.user[order],
        time=utc[order],
        location=log.location[order],
        category=pick(log.category),
        utc_offset_minutes=pick(log.utc_offset_minutes),
        session=pick(log.session),
        attrs=dict(log.attrs),
    )


def _first_filter(log: EventLog, config: CheckinConfig) -> EventLog:
    users = np.bincount(log.user, minlength=log.num_users)[log.user] > config.min_user_records
    places = (
        np.bincount(log.location, minlength=log.num_locations)[log.location]
        > config.min_location_records
    )
    keep = users & places
    if not keep.any():
        if not users.any():
            key, value = "min_user_records", config.min_user_records
        elif not places.any():
            key, value = "min_location_records", config.min_location_records
        else:
            key = "min_user_records or min_location_records"
            value = f"{config.min_user_records} and {config.min_location_records}"
        _empty(log, "the user and location filters", key, value)
    return log.take(keep)


def _second_filter(log: EventLog, config: CheckinConfig) -> EventLog:
    users = np.bincount(log.user, minlength=log.num_users)[log.user] > config.min_user_records
    places = (
        np.bincount(log.location, minlength=log.num_locations)[log.location]
        > config.min_location_records
    )
    if config.keep_repeat_locations:
        pair = log.user * np.int64(log.num_locations) + log.location
        _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
        places |= counts[inverse] > 1
    keep = users & places
    if not keep.any():
        key = "min_user_records" if not users.any() else "min_location_records"
        _empty(log, "merging and the second user and location filters", key, getattr(config, key))
    return log.take(keep)


def _session_ids(log: EventLog, rule: str, gap_hours: float) -> np.ndarray:
    """Session id of each event: 0, 1, ... in log order (sessions never span two users)."""
    new = np.ones(log.num_events, dtype=bool)
    same_user = log.user[1:] == log.user[:-1]
    if rule == "iso-week":
        week = (log.time.astype("datetime64[D]").astype(np.int64) - _MONDAY) // 7
        new[1:] = ~same_user | (week[1:] != week[:-1])
    elif rule == "gap":
        gap = np.diff(log.time).astype(np.int64)  # seconds
        new[1:] = ~same_user | (gap > gap_hours * 3600)
    else:
        new[1:] = ~same_user | (log.session[1:] != log.session[:-1])
    return np.cumsum(new) - 1


def _keep(
    log: EventLog, session: np.ndarray, weight: np.ndarray, keep: np.ndarray, key: str, value: Any
) -> tuple[EventLog, np.ndarray, np.ndarray]:
    if not keep.any():
        _empty(log, f"the {key} filter", key, value)
    kept = session[keep]
    # Renumber the surviving sessions 0, 1, ... in order.
    return log.take(keep), np.cumsum(np.r_[True, kept[1:] != kept[:-1]]) - 1, weight[keep]


def _empty(log: EventLog, step: str, key: str, value: Any) -> None:
    raise InputError(
        f"{log.name}: no check-ins are left after {step}. Lower {key} (now {value}) in the "
        "check-in preprocessing settings, or use more data."
    )


def _compact(log: EventLog) -> EventLog:
    """The log with dense ids over the users, locations and categories it still holds."""
    users, user = np.unique(log.user, return_inverse=True)
    places, location = np.unique(log.location, return_inverse=True)
    category, categories = log.category, log.categories
    if category is not None:
        kinds, category = np.unique(category, return_inverse=True)
        categories = log.categories[kinds]
    return dataclasses.replace(
        log,
        user=user.astype(np.int64),
        location=location.astype(np.int64),
        users=log.users[users],
        locations=log.locations[places],
        category=None if category is None else category.astype(np.int64),
        categories=categories,
        coords=None if log.coords is None else log.coords[places],
        attrs=dict(log.attrs),
    )


def _split(user: np.ndarray, config: CheckinConfig) -> np.ndarray:
    """`HISTORY`/`TRAIN`/`VAL`/`TEST` of each session (sessions grouped by user, in order)."""
    first = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    count = np.diff(np.r_[first, len(user)])
    n = np.repeat(count, count)
    rank = np.arange(len(user)) - np.repeat(first, count)
    # round() first: 0.2 * 15 is 3.0000000000000004 in floating point, not 3.
    test = np.maximum(1, np.ceil(np.round(config.test_ratio * (n - 1), 9)).astype(np.int64))
    test = np.minimum(test, n - 2 - config.val_sessions)  # keep one train session
    split = np.full(len(user), TRAIN, dtype=np.int8)
    split[rank >= n - test - config.val_sessions] = VAL
    split[rank >= n - test] = TEST
    split[rank == 0] = HISTORY
    return split
