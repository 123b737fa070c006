"""Check-in data: adapters into `EventLog`, filters and sessions (`Sessions`).

``open_checkins(spec)`` reads a dataset card or a user's long table into an `EventLog`;
``make_sessions(log, CheckinConfig(...))`` merges, cuts sessions and splits them per user into a
`Sessions`, then filters users and locations and builds the vocabularies on the training side
(held-out check-ins outside it map to `UNKNOWN`); its ``train_view()`` is all that learned
statistics may read.
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
from stgraph.data.checkins.vocabulary import UNKNOWN

__all__ = [
    "READERS",
    "UNKNOWN",
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
