"""`CheckinConfig`: how check-ins are filtered, merged, cut into sessions and split.

The defaults follow the HGARN preprocessing (Tang et al., T-ITS 2024; official
``data_preprocess.py``/``data_prepare.py``): users and locations with more than 10 records,
repeated check-ins merged, one session per ISO week, sessions of at least 2 records, users with
at least 5 sessions, and each user's sessions split in time order. Two deliberate differences:
a validation session is held out (the official code has none), and time is local (the official
code reads the UTC timestamp; ``clock: utc`` reproduces that).

On merging: the official ``data_preprocess.py`` means to merge consecutive records of one user
at one POI on one day, but its "day" is field 2 of the raw line (the venue category id, not the
time), and "consecutive" is the raw file's order, which is by time across all users. In effect
it only drops a check-in whose previous line in the file is the same user at the same venue (and
the file's first line). ``merge_repeats: same-day`` implements the stated rule per user;
``none`` is the closer match to what the official code does.

On leakage: the official code filters users and POIs on all check-ins before it splits them, so
test check-ins decide which POIs exist. By default the filters and vocabularies here count only
the training side of the split (`stgraph.data.checkins.vocabulary`); ``faithful_vocabulary``
restores the official order.
"""

from __future__ import annotations

from dataclasses import dataclass

from stgraph.config import option
from stgraph.errors import InputError

MERGE_RULES = ("same-day", "none")
SESSION_RULES = ("auto", "iso-week", "gap", "source")
CLOCKS = ("local", "utc")


@dataclass(frozen=True)
class CheckinConfig:
    """Check-in preprocessing (see `stgraph.data.checkins.make_sessions` for the order)."""

    min_user_records: int = option(
        10,
        "keep users with MORE than this many training check-ins (faithful_vocabulary: "
        "check-ins of all splits, checked before and after merging)",
    )
    min_location_records: int = option(
        10,
        "keep locations with MORE than this many training check-ins (faithful_vocabulary: "
        "check-ins of all splits, checked before and after merging)",
    )
    faithful_vocabulary: bool = option(
        False,
        "filter users and locations and build the vocabularies on ALL check-ins before the "
        "split, as the official HGARN code (validation and test data then decide which "
        "locations exist; for the faithful variant only). Default: on training check-ins only",
    )
    keep_repeat_locations: bool = option(
        True,
        "after merging, also keep a user's check-ins at a rarer location that this user "
        "visited more than once (the DeepMove/HGARN rule)",
    )
    merge_repeats: str = option(
        "same-day",
        "same-day: merge consecutive check-ins of one user at one location on one (local) day "
        "into the first; none: keep every check-in",
    )
    session: str = option(
        "auto",
        "iso-week: one session per Monday-Sunday week; gap: a new session after gap_hours "
        "without check-ins; source: the source's own sessions (trajectory ids); auto: the "
        "dataset card's rule, else source where the data has sessions, else iso-week",
    )
    gap_hours: float = option(24.0, "for session=gap: the silence that starts a new session")
    min_session_records: int = option(2, "drop sessions with fewer check-ins")
    min_sessions_per_user: int = option(5, "drop users with fewer sessions (after the above)")
    test_ratio: float = option(
        0.2,
        "share of each user's sessions after the first that are test: ceil(ratio x (n - 1)), "
        "at least 1, the latest ones",
    )
    val_sessions: int = option(
        1, "sessions just before the test ones held out for validation (0: none, as HGARN)"
    )
    clock: str = option(
        "local",
        "local: the venue's local time; utc: UTC time, as the official HGARN code (for the "
        "faithful variant only; needs UTC offsets in the data)",
    )

    def __post_init__(self) -> None:
        for key, value, choices in (
            ("merge_repeats", self.merge_repeats, MERGE_RULES),
            ("session", self.session, SESSION_RULES),
            ("clock", self.clock, CLOCKS),
        ):
            if value not in choices:
                raise InputError(
                    f"Check-in config: {key} must be one of {', '.join(choices)}, got {value!r}."
                )
        for key in (
            "min_user_records",
            "min_location_records",
            "min_session_records",
            "val_sessions",
        ):
            if getattr(self, key) < 0:
                raise InputError(f"Check-in config: {key} must be >= 0, got {getattr(self, key)}.")
        if self.min_session_records < 2:
            raise InputError(
                "Check-in config: min_session_records must be >= 2 (a sample needs at least one "
                f"input check-in and a target), got {self.min_session_records}."
            )
        least = 3 + self.val_sessions  # history, one train, the validation ones, one test
        if self.min_sessions_per_user < least:
            raise InputError(
                f"Check-in config: min_sessions_per_user must be >= {least} (one history, one "
                f"train, {self.val_sessions} validation and one test session), got "
                f"{self.min_sessions_per_user}."
            )
        if not 0.0 < self.test_ratio < 1.0:
            raise InputError(
                f"Check-in config: test_ratio must be in (0, 1), got {self.test_ratio}."
            )
        if self.gap_hours <= 0:
            raise InputError(f"Check-in config: gap_hours must be > 0, got {self.gap_hours}.")
