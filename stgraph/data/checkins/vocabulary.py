"""The vocabularies and the user/location filters of `make_sessions`, from training check-ins.

Once each user's sessions are split in time order, only the training side (history and train
sessions) decides which users, locations and categories exist: validation and test check-ins
never vote. What they hold outside the training vocabulary is kept and mapped to one extra
entry, `UNKNOWN` (the last location id, and the last category id where there are categories),
which no training check-in carries: a validation or test target there is never "seen in
training", so the task scores it as a miss instead of dropping the sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stgraph.data.checkins.config import CheckinConfig
from stgraph.data.checkins.sessions import TRAIN
from stgraph.data.events import EventLog
from stgraph.errors import InputError

UNKNOWN = "<unknown>"


def training_vocabulary(
    log: EventLog,
    session: np.ndarray,
    split: np.ndarray,
    weight: np.ndarray,
    config: CheckinConfig,
) -> tuple[EventLog, np.ndarray, np.ndarray]:
    """Filter users and locations on the training check-ins and re-index the log.

    Args:
        log: merged check-ins sorted by user, then time (raw ids).
        session: ``[E]`` session id of each check-in (0, 1, ... in log order).
        split: ``[K]`` `HISTORY`/`TRAIN`/`VAL`/`TEST` of each session.
        weight: ``[E]`` input check-ins each one stands for (itself and those merged into it).
        config: the thresholds.

    Steps, the official two filters (`CheckinConfig`) on history and train check-ins only:

    1. Counting input check-ins (``weight``): users with more than ``min_user_records`` and
       locations with more than ``min_location_records`` stay.
    2. Counting what step 1 kept, merged: the same thresholds again, where
       ``keep_repeat_locations`` also keeps a user's check-ins at a location this user
       visited more than once. A user failing either step loses all sessions; a location
       failing loses its training check-ins. Validation and test check-ins all stay.
    3. History and train sessions left with fewer than ``min_session_records`` check-ins go,
       then users left without a train session.
    4. The vocabulary is the locations and categories of the remaining training check-ins, in
       the original order, plus `UNKNOWN` last; every other check-in (validation or test only)
       maps to `UNKNOWN` (coordinates NaN). ``log.attrs`` records ``unknown_location`` (and
       ``unknown_category``).

    Returns:
        ``(log, session, split)`` re-indexed: dense user ids, sessions renumbered.
    """
    train = split[session] <= TRAIN
    user, place, weight = log.user[train], log.location[train], weight[train]
    users_ok = _more(user, weight, log.num_users, config.min_user_records)
    common = _more(place, weight, log.num_locations, config.min_location_records)
    first = users_ok[user] & common[place]
    users_ok &= _more(user[first], 1, log.num_users, config.min_user_records)
    places = _more(place[first], 1, log.num_locations, config.min_location_records)[place]
    if config.keep_repeat_locations:
        _, pair = np.unique(user * np.int64(log.num_locations) + place, return_inverse=True)
        pair = pair.reshape(-1)
        places |= np.bincount(pair, first)[pair] > 1  # this user's visits that step 1 kept
    if not users_ok.any():
        _take(log, session, split, users_ok[log.user], "min_user_records", config)
    keep = users_ok[log.user]
    keep[train] &= first & places
    log, session, split = _take(log, session, split, keep, "min_location_records", config)

    size = np.bincount(session, minlength=len(split))
    short = (size < config.min_session_records) & (split <= TRAIN)
    log, session, split = _take(log, session, split, ~short[session], "min_session_records", config)
    session_user = log.user[np.r_[0, np.flatnonzero(np.diff(session)) + 1]]
    has_train = np.bincount(session_user[split == TRAIN], minlength=log.num_users) > 0
    log, session, split = _take(
        log, session, split, has_train[log.user], "min_location_records", config
    )

    train = split[session] <= TRAIN
    return _compact(log, log.location[train], log.category, train), session, split


def _more(ids: np.ndarray, weight: np.ndarray | int, size: int, least: int) -> np.ndarray:
    """``[size]`` whether each id has more than ``least`` (weighted) occurrences."""
    weights = np.broadcast_to(weight, ids.shape)
    return np.bincount(ids, weights, minlength=size) > least


def _take(
    log: EventLog,
    session: np.ndarray,
    split: np.ndarray,
    keep: np.ndarray,
    key: str,
    config: CheckinConfig,
) -> tuple[EventLog, np.ndarray, np.ndarray]:
    """The check-ins at ``keep``, sessions renumbered 0, 1, ... (empty ones gone)."""
    if not keep.any():
        raise InputError(
            f"{log.name}: no check-ins are left after the filters on the training check-ins. "
            f"Lower {key} (now {getattr(config, key)}) in the check-in preprocessing settings, "
            "or use more data."
        )
    ids, session = np.unique(session[keep], return_inverse=True)
    return log.take(keep), session.reshape(-1), split[ids]


def _compact(
    log: EventLog, train_places: np.ndarray, category: np.ndarray | None, train: np.ndarray
) -> EventLog:
    """Dense ids: users that remain, the training locations and categories plus `UNKNOWN`."""
    users, user = np.unique(log.user, return_inverse=True)
    places = np.unique(train_places)
    location = _remap(log.location, places, log.num_locations)
    attrs = {**log.attrs, "unknown_location": len(places)}
    categories = log.categories
    if category is not None and log.num_categories > 0:
        kinds = np.unique(category[train])
        category = _remap(category, kinds, log.num_categories)
        categories = np.concatenate([log.categories[kinds], np.array([UNKNOWN], dtype=object)])
        attrs["unknown_category"] = len(kinds)
    coords = log.coords
    if coords is not None:
        coords = np.vstack([coords[places], np.full((1, 2), np.nan)])
    return dataclasses.replace(
        log,
        user=user.reshape(-1).astype(np.int64),
        location=location,
        users=log.users[users],
        locations=np.concatenate([log.locations[places], np.array([UNKNOWN], dtype=object)]),
        category=category,
        categories=categories,
        coords=coords,
        attrs=attrs,
    )


def _remap(values: np.ndarray, kept: np.ndarray, size: int) -> np.ndarray:
    """``values`` re-indexed onto ``kept`` (sorted ids); anything else -> ``len(kept)``."""
    table = np.full(size, len(kept), dtype=np.int64)
    table[kept] = np.arange(len(kept))
    return table[values]
