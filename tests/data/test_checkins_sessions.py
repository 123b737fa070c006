"""`make_sessions` on tiny logs whose filters, merges, session cuts and splits are worked out by
hand (the default order: split first, filters and vocabularies on training check-ins; and the
official order, ``faithful_vocabulary``), and `CheckinConfig`'s checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgraph.config import from_dict
from stgraph.data.checkins import CheckinConfig, make_sessions
from stgraph.data.checkins.log import make_log
from stgraph.data.checkins.sessions import HISTORY, TEST, TRAIN, VAL
from stgraph.data.checkins.vocabulary import UNKNOWN
from stgraph.errors import InputError

# (label, user, local time, location). All at UTC-4 (New York in spring). Weeks start on
# Mondays 04-02, 04-09, 04-16, 04-23 and 04-30 (2012).
ROWS = [
    ("a", "u1", "2012-04-02 08:00", "H"),
    ("b", "u1", "2012-04-02 09:00", "W"),
    ("c", "u1", "2012-04-02 18:00", "W"),  # same user, place and day as b: merged into b
    ("d", "u1", "2012-04-03 08:00", "H"),
    ("e", "u1", "2012-04-09 08:00", "H"),  # H just before (d), but another day: kept
    ("f", "u1", "2012-04-10 12:00", "M"),
    ("g", "u1", "2012-04-10 12:30", "M"),  # merged into f
    ("h", "u1", "2012-04-10 18:00", "W"),
    ("i", "u1", "2012-04-16 08:00", "H"),
    ("j", "u1", "2012-04-16 12:00", "M"),
    ("k", "u1", "2012-04-22 23:30", "W"),  # Sunday night: still the week of 04-16 locally
    ("l", "u1", "2012-04-23 00:30", "H"),
    ("m", "u1", "2012-04-23 08:00", "W"),
    ("n", "u1", "2012-04-30 08:00", "H"),
    ("o", "u1", "2012-05-01 08:00", "W"),
    ("p", "u1", "2012-05-01 09:00", "R"),  # R has one check-in: dropped by the first filter
    ("q", "u2", "2012-04-02 10:00", "N"),
    ("r", "u2", "2012-04-02 10:10", "N"),  # merged into q
    ("s", "u2", "2012-04-02 10:20", "N"),  # merged into q
    ("t", "u2", "2012-04-09 08:00", "H"),
    ("u", "u2", "2012-04-09 09:00", "W"),
    ("v", "u3", "2012-04-02 08:00", "H"),  # u3 has 2 check-ins: dropped by the first filter
    ("w", "u3", "2012-04-03 08:00", "H"),
]
# Users and places need MORE than 2 check-ins. Default order: merging leaves a b d | e f h |
# i j k | l m | n o p for u1 (c and g merged), q t u for u2 (r, s merged) and v w for u3. q's week
# has one check-in, so u2 keeps one session and u3 has one: both have fewer than 3 and go. u1's
# 5 weeks split H T T T X; on the training check-ins (a..m) H has 5, W 4 and M 2 (but u1 visited
# it twice): all stay. R occurs only in the test week (p): kept, as the unknown location.
TINY = dict(min_user_records=2, min_location_records=2, min_sessions_per_user=3, val_sessions=0)
KEPT = "a b d | e f h | i j k | l m | n o p"
# Official order (faithful_vocabulary): first filter on all check-ins: u3 (2) and R (1) go; M
# and N have 3 each and stay. After merging, M has 2 (f, j) but u1 visited it twice: kept; N
# has 1 (q): dropped. u2 is left with one week (t, u): fewer than 3 sessions, dropped.
FAITHFUL = dict(**TINY, faithful_vocabulary=True)
KEPT_FAITHFUL = "a b d | e f h | i j k | l m | n o"


def tiny_log(rows=ROWS, offset=-240):
    frame = pd.DataFrame(rows, columns=["label", "user", "time", "location"])
    frame["time"] = pd.to_datetime(frame["time"])
    frame["utc_offset"] = offset
    coords = {
        "H": (40.70, -74.0),
        "W": (40.75, -73.98),
        "M": (40.72, -73.99),
        "N": (40.8, -73.9),
        "R": (40.6, -74.1),
        "Z": (40.65, -74.05),
    }
    frame["lat"] = [coords[p][0] for p in frame["location"]]
    frame["lon"] = [coords[p][1] for p in frame["location"]]
    frame["category"] = frame["location"].map(
        {"H": "Home", "W": "Office", "M": "Cafe", "N": "Bar", "R": "Park", "Z": "Zoo"}
    )
    return make_log(frame.drop(columns="label"), "tiny")


def labels(sessions, utc=False):
    """The kept check-ins as the row labels of ROWS, sessions separated by '|'."""
    log = sessions.log
    local = log.time + log.utc_offset_minutes.astype("timedelta64[m]") if utc else log.time
    by_key = {(u, pd.Timestamp(t).to_datetime64()): lab for lab, u, t, _ in ROWS}
    names = [by_key[(log.users[u], np.datetime64(t, "ns"))] for u, t in zip(log.user, local)]
    parts = [" ".join(names[a:b]) for a, b in zip(sessions.bounds[:-1], sessions.bounds[1:])]
    return " | ".join(parts)


def test_split_first_then_filters_on_training_check_ins():
    sessions = make_sessions(tiny_log(), CheckinConfig(**TINY))
    assert labels(sessions) == KEPT
    stages = sessions.log.attrs["stages"]
    assert set(stages) == {"input", "merged", "sessions", "train_filter"}
    assert stages["input"] == {"users": 3, "locations": 5, "events": 23}
    assert stages["merged"] == {"users": 3, "locations": 5, "events": 19}
    assert stages["sessions"] == {"users": 1, "locations": 4, "events": 14}
    assert stages["train_filter"] == {"users": 1, "locations": 4, "events": 14}
    log = sessions.log
    # The training vocabulary (original order), then the unknown entry, which p (R) maps to.
    assert list(log.users) == ["u1"] and list(log.locations) == ["H", "M", "W", UNKNOWN]
    assert list(log.categories) == ["Cafe", "Home", "Office", UNKNOWN]
    assert log.attrs["unknown_location"] == 3 and log.attrs["unknown_category"] == 3
    assert log.location[-1] == 3 and log.category[-1] == 3
    np.testing.assert_allclose(
        log.coords, [[40.70, -74.0], [40.72, -73.99], [40.75, -73.98], [np.nan, np.nan]]
    )
    assert sessions.bounds.tolist() == [0, 3, 6, 9, 11, 14]
    assert sessions.split.tolist() == [HISTORY, TRAIN, TRAIN, TRAIN, TEST]
    assert sessions.user.tolist() == [0] * 5
    assert sessions.log.attrs["preprocess"]["session"] == "iso-week"
    assert not sessions.log.attrs["preprocess"]["faithful_vocabulary"]


def test_faithful_order_filters_all_check_ins_first():
    sessions = make_sessions(tiny_log(), CheckinConfig(**FAITHFUL))
    assert labels(sessions) == KEPT_FAITHFUL
    stages = sessions.log.attrs["stages"]
    assert stages["input"] == {"users": 3, "locations": 5, "events": 23}
    assert stages["first_filter"] == {"users": 2, "locations": 4, "events": 20}
    assert stages["merged"] == {"users": 2, "locations": 4, "events": 16}
    assert stages["second_filter"] == {"users": 2, "locations": 3, "events": 15}
    assert stages["sessions"] == {"users": 1, "locations": 3, "events": 13}
    log = sessions.log
    # Vocabularies after filtering, dense and in the original order, no unknown entry.
    assert list(log.users) == ["u1"] and list(log.locations) == ["H", "M", "W"]
    assert list(log.categories) == ["Cafe", "Home", "Office"]
    assert "unknown_location" not in log.attrs
    np.testing.assert_allclose(log.coords, [[40.70, -74.0], [40.72, -73.99], [40.75, -73.98]])
    assert sessions.bounds.tolist() == [0, 3, 6, 9, 11, 13]
    assert sessions.split.tolist() == [HISTORY, TRAIN, TRAIN, TRAIN, TEST]


def test_repeat_locations_rule_and_no_merge():
    strict = make_sessions(tiny_log(), CheckinConfig(**TINY, keep_repeat_locations=False))
    assert labels(strict) == "a b d | e h | i k | l m | n o p"  # M (f, j: 2 in training) goes
    assert list(strict.log.locations) == ["H", "W", UNKNOWN]
    # The repeat rule rescues only locations that pass the first count (input check-ins): M has
    # 3 training ones (f, g, j), not more than 3.
    rare = make_sessions(tiny_log(), CheckinConfig(**{**TINY, "min_location_records": 3}))
    assert labels(rare) == "a b d | e h | i k | l m | n o p"
    unmerged = make_sessions(tiny_log(), CheckinConfig(**TINY, merge_repeats="none"))
    assert labels(unmerged) == "a b c d | e f g h | i j k | l m | n o p"
    strict = make_sessions(tiny_log(), CheckinConfig(**FAITHFUL, keep_repeat_locations=False))
    assert labels(strict) == "a b d | e h | i k | l m | n o"
    unmerged = make_sessions(tiny_log(), CheckinConfig(**FAITHFUL, merge_repeats="none"))
    assert labels(unmerged) == "a b c d | e f g h | i j k | l m | n o"


def test_training_filter_drops_short_training_sessions_and_users_left_without_one():
    """A: 6 gap sessions of 2 check-ins (H T T T V X); B: 5 (H T T V X). With locations needing
    more than 1 training check-in and no repeat rule, X (once in A's third session) and every
    place of B's train sessions go: A's third session is left with 1 check-in and goes; B has
    no train session left and goes. A's test session (X, Y) stays, both as the unknown place."""
    plan = {"A": ["HW", "HW", "HX", "HW", "HW", "XY"], "B": ["HW", "PQ", "RS", "HW", "HW"]}
    rows = []
    for user, places in plan.items():
        for k, pair in enumerate(places):
            start = pd.Timestamp("2012-04-02") + pd.Timedelta(hours=72 * k)
            rows += [
                (f"{user}{k}a", user, str(start), pair[0]),
                (f"{user}{k}b", user, str(start + pd.Timedelta(hours=24)), pair[1]),
            ]
    frame = pd.DataFrame(rows, columns=["label", "user", "time", "location"])
    frame["time"] = pd.to_datetime(frame["time"])
    config = CheckinConfig(
        min_user_records=0,
        min_location_records=1,
        keep_repeat_locations=False,
        merge_repeats="none",
        session="gap",
        gap_hours=24,
    )
    sessions = make_sessions(make_log(frame.drop(columns="label"), "gaps"), config)
    log = sessions.log
    assert list(log.users) == ["A"] and list(log.locations) == ["H", "W", UNKNOWN]
    names = log.locations[log.location]
    parts = [" ".join(names[a:b]) for a, b in zip(sessions.bounds[:-1], sessions.bounds[1:])]
    assert parts == ["H W", "H W", "H W", "H W", f"{UNKNOWN} {UNKNOWN}"]
    assert sessions.split.tolist() == [HISTORY, TRAIN, TRAIN, VAL, TEST]
    assert log.attrs["stages"]["train_filter"] == {"users": 1, "locations": 3, "events": 10}


def test_split_history_train_val_test():
    sessions = make_sessions(tiny_log(), CheckinConfig(**TINY))
    # 5 sessions: test = ceil(0.2 * 4) = 1; no validation.
    assert sessions.split.tolist() == [HISTORY, TRAIN, TRAIN, TRAIN, TEST]
    with_val = make_sessions(
        tiny_log(), CheckinConfig(**{**TINY, "val_sessions": 1, "min_sessions_per_user": 4})
    )
    assert with_val.split.tolist() == [HISTORY, TRAIN, TRAIN, VAL, TEST]
    assert with_val.samples("val").tolist() == [3] and with_val.samples("test").tolist() == [4]
    counts = with_val.counts()
    assert counts["train_sessions"] == 2 and counts["history_sessions"] == 1
    described = with_val.describe()
    assert described["val_events"] == 2 and described["test_events"] == 3  # n o p
    assert described["history_events"] == 3 and described["mean_session_length"] == 14 / 5
    assert described["unknown_events"] == 1  # p, at R


def test_train_view_holds_no_later_check_in():
    sessions = make_sessions(
        tiny_log(), CheckinConfig(**{**TINY, "val_sessions": 1, "min_sessions_per_user": 4})
    )
    view = sessions.train_view().log
    assert view.num_events == 9  # history a b d, train e f h and i j k
    assert view.time.max() < np.datetime64("2012-04-23T00:00")  # the validation week
    assert view.num_locations == sessions.log.num_locations  # vocabularies are shared
    assert UNKNOWN not in view.locations[view.location]  # no training check-in is unknown


def test_location_seen_only_in_test():
    rows = [*ROWS, ("z", "u1", "2012-05-01 10:00", "Z")]  # in u1's last (test) week only
    config = dict(min_user_records=0, min_location_records=0, min_sessions_per_user=4)
    # Default: Z is not in the training vocabulary; z maps to the unknown location.
    sessions = make_sessions(tiny_log(rows), CheckinConfig(**config))
    assert "Z" not in sessions.log.locations and sessions.split[-1] == TEST
    assert sessions.log.locations[sessions.log.location[-1]] == UNKNOWN
    # Official order: Z is in the vocabulary, unseen in training.
    faithful = make_sessions(tiny_log(rows), CheckinConfig(**config, faithful_vocabulary=True))
    z = list(faithful.log.locations).index("Z")
    assert faithful.split[-1] == TEST and z in faithful.log.location[faithful.bounds[-2] :]
    view = faithful.train_view().log
    assert z not in view.location and view.locations[z] == "Z"


def test_utc_clock_moves_the_week_boundary():
    sessions = make_sessions(tiny_log(), CheckinConfig(**TINY, clock="utc"))
    # k (Sunday 23:30 local) is Monday 03:30 UTC: it joins the week of 04-23.
    assert labels(sessions, utc=True) == "a b d | e f h | i j | k l m | n o p"
    assert sessions.log.time[8] == np.datetime64("2012-04-23T03:30")
    assert sessions.log.attrs["clock"] == "utc"


def test_gap_sessions_and_split_sizes():
    # One user per n in (5, 6, 7, 16): n sessions of 2 check-ins 24 h apart, 72 h between starts.
    rows = []
    for user, n in enumerate((5, 6, 7, 16)):
        for k in range(n):
            start = pd.Timestamp("2012-04-02") + pd.Timedelta(hours=72 * k)
            rows += [
                (f"x{user}{k}a", f"u{user}", str(start), "H"),
                (f"x{user}{k}b", f"u{user}", str(start + pd.Timedelta(hours=24)), "W"),
            ]
    config = CheckinConfig(
        min_user_records=0,
        min_location_records=0,
        session="gap",
        gap_hours=24,
        merge_repeats="none",
    )
    sessions = make_sessions(tiny_log(rows), config)
    # A gap of exactly 24 h stays in the session; the next one, 48 h later, starts a new one.
    assert np.diff(sessions.bounds).tolist() == [2] * (5 + 6 + 7 + 16)
    codes = {HISTORY: "H", TRAIN: "T", VAL: "V", TEST: "X"}
    split = "".join(codes[s] for s in sessions.split)
    # test = ceil(0.2 (n - 1)): 1, 1, 2 and 3 (0.2 * 15 is 3.0000000000000004 in floats).
    assert split == "HTTVX" + "HTTTVX" + "HTTTVXX" + "H" + "T" * 11 + "VXXX"
    greedy = make_sessions(tiny_log(rows), CheckinConfig(**{**config.__dict__, "test_ratio": 0.9}))
    assert "".join(codes[s] for s in greedy.split)[:5] == "HTVXX"  # one train session kept


def test_source_sessions():
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 1, 1, 1],
            "location": ["a", "b", "a", "b", "a", "b"],
            "time": pd.to_datetime(
                [
                    "1970-01-05 08:00",
                    "1970-01-05 09:00",
                    "1970-01-12 08:00",
                    "1970-01-12 09:00",
                    "1970-01-19 08:00",
                    "1970-01-19 09:00",
                ]
            ),
            "session": [7, 7, 9, 9, 11, 11],
        }
    )
    log = make_log(frame, "weeks", week_only=True)
    config = CheckinConfig(
        min_user_records=0, min_location_records=0, min_sessions_per_user=3, val_sessions=0
    )
    sessions = make_sessions(log, config)  # auto: the source's sessions
    assert sessions.bounds.tolist() == [0, 2, 4, 6]
    assert sessions.log.attrs["preprocess"]["session"] == "source"
    with pytest.raises(InputError, match="session='source' needs sessions given by the data"):
        make_sessions(tiny_log(), CheckinConfig(session="source"))


def test_empty_after_filtering_names_the_setting():
    with pytest.raises(
        InputError,
        match=r"tiny: no check-ins are left after the filters on the training check-ins\. "
        r"Lower min_user_records \(now 100\)",
    ):
        make_sessions(tiny_log(), CheckinConfig(min_user_records=100, min_location_records=0))
    with pytest.raises(
        InputError,
        match=r"tiny: no check-ins are left after the user and "
        r"location filters\. Lower min_user_records \(now 100\)",
    ):
        make_sessions(
            tiny_log(),
            CheckinConfig(min_user_records=100, min_location_records=0, faithful_vocabulary=True),
        )
    with pytest.raises(InputError, match=r"Lower min_sessions_per_user \(now 9\)"):
        make_sessions(tiny_log(), CheckinConfig(**{**TINY, "min_sessions_per_user": 9}))


def test_utc_clock_needs_offsets():
    frame = pd.DataFrame(
        {"user": [1], "location": ["a"], "time": pd.to_datetime(["2012-04-02 08:00"])}
    )
    with pytest.raises(InputError, match="clock='utc' needs UTC offsets"):
        make_sessions(make_log(frame, "naive"), CheckinConfig(clock="utc"))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"session": "week"}, r"session must be one of auto, iso-week, gap, source"),
        ({"min_sessions_per_user": 3}, r"min_sessions_per_user must be >= 4"),
        ({"min_session_records": 1}, r"min_session_records must be >= 2"),
        ({"test_ratio": 1.0}, r"test_ratio must be in \(0, 1\)"),
        ({"clock": "UTC"}, r"clock must be one of local, utc"),
    ],
)
def test_config_checks(values, match):
    with pytest.raises(InputError, match=match):
        from_dict(CheckinConfig, values)


def test_config_defaults_follow_the_spec():
    config = from_dict(CheckinConfig, {"gap_hours": "6"})
    assert (config.min_user_records, config.min_location_records) == (10, 10)
    assert (config.min_session_records, config.min_sessions_per_user) == (2, 5)
    assert (config.test_ratio, config.val_sessions, config.clock) == (0.2, 1, "local")
    assert config.merge_repeats == "same-day" and config.gap_hours == 6.0
    assert config.faithful_vocabulary is False
