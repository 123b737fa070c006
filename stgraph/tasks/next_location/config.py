"""The settings of the next-location task (``task.params`` of a pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stgraph.config import from_dict, option
from stgraph.errors import InputError
from stgraph.tasks.next_location.scoring import NextLocationMetrics

BATCHINGS = ("packed", "bootstrap")


@dataclass
class NextLocationConfig:
    """Check-in preprocessing (``checkins``, the settings of `CheckinConfig`, nested so that the
    data layer owns their names and defaults), graphs, loss, metrics and HGARN's quirks."""

    checkins: dict = option(
        {},
        "check-in preprocessing, the fields of CheckinConfig: min_user_records, "
        "min_location_records, merge_repeats, session, gap_hours, min_session_records, "
        "min_sessions_per_user, test_ratio, val_sessions, clock (local | utc: HGARN's clock)",
    )
    radius_km: float = option(0.1, "locations closer than this are linked in the location graph")
    slot_hours: int = option(2, "width of the time slots of the category co-occurrence graph")
    location: float = option(1.0, "weight of the location loss term")
    category: float = option(1.0, "weight of the category loss term (0: no category loss)")
    target_weight: float = option(
        0.8, "MAHEC: weight of the true item in the soft label (1.0: plain cross-entropy)"
    )
    ks: list[int] = option([1, 5, 10, 20], "cut-offs of Acc@k and NDCG@k")
    top_k: int = option(10, "locations listed per sample in the prediction table and served")
    monitor: str = option("mrr", "validation metric for early stopping and model selection")
    batching: str = option(
        "packed",
        "packed: each epoch a permutation of users, whole users per batch | bootstrap: HGARN's "
        "N // batch_size independent draws without replacement per epoch (parity runs only)",
    )
    faithful_history_off_by_one: bool = option(
        False, "HGARN's bug: the longest sample of a batch loses its smallest history id"
    )
    faithful_loss_divisor: bool = option(
        False,
        "HGARN's quirk: a sample with no history besides its target adds no loss but still "
        "counts in the batch divisor",
    )

    def __post_init__(self) -> None:
        if self.batching not in BATCHINGS:
            raise InputError(
                f"task.params.batching must be one of {BATCHINGS}, got {self.batching!r}."
            )
        if not 0.0 <= self.target_weight <= 1.0:
            raise InputError(
                f"task.params.target_weight must lie in [0, 1], got {self.target_weight}."
            )
        if self.location < 0 or self.category < 0:
            raise InputError("task.params.location and category (loss weights) must be >= 0.")
        if self.radius_km <= 0 or self.slot_hours <= 0 or 24 % self.slot_hours:
            raise InputError(
                "task.params.radius_km must be positive and slot_hours a divisor of 24, got "
                f"{self.radius_km} and {self.slot_hours}."
            )
        if not self.ks or len(set(self.ks)) != len(self.ks) or min(self.ks) < 1:
            raise InputError(f"task.params.ks must be distinct positive integers, got {self.ks}.")
        if self.top_k < 1:
            raise InputError(f"task.params.top_k must be positive, got {self.top_k}.")
        names = NextLocationMetrics(tuple(self.ks), 1, 1).compute()
        if self.monitor not in names:
            raise InputError(
                f"task.params.monitor must be one of the task's metrics, got {self.monitor!r}: "
                f"{', '.join(names)}."
            )

    def checkin_config(self) -> Any:
        """``checkins`` as a `CheckinConfig` (an unknown key is an `InputError`)."""
        from stgraph.data.checkins import CheckinConfig

        return from_dict(CheckinConfig, self.checkins, "task.params.checkins")

    @property
    def clock(self) -> str:
        return str(self.checkins.get("clock", "local"))
