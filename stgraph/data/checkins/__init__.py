"""Check-in data: adapters into `EventLog`, filters and sessions (`Sessions`).

``open_checkins(spec)`` reads a dataset card or a user's long table into an `EventLog`;
``make_sessions(log, CheckinConfig(...))`` filters, merges, cuts sessions and splits them per
user into a `Sessions`, whose ``train_view()`` is all that learned statistics may read.
"""

from stgraph.data.checkins.config import CheckinConfig
from stgraph.data.checkins.formats import (
    READERS,
    read_llmmob,
    read_stan,
    read_trajgan,
    read_tsmc2014,
)
from stgraph.data.checkins.prepare import make_sessions
from stgraph.data.checkins.sessions import CheckinTrainView, Sessions
from stgraph.data.checkins.sources import open_checkins
from stgraph.data.checkins.table import read_checkin_table

__all__ = [
    "READERS",
    "CheckinConfig",
    "CheckinTrainView",
    "Sessions",
    "make_sessions",
    "open_checkins",
    "read_checkin_table",
    "read_llmmob",
    "read_stan",
    "read_trajgan",
    "read_tsmc2014",
]
