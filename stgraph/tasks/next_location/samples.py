"""The samples of the next-location task and how they are packed into batches.

A sample is one session of a split: the user's check-ins before the session's last one predict
its location. Everything here is index arithmetic over the event log's arrays (sorted by user,
then time): a sample is the event index of its target, its input is every earlier event of the
user, and a batch gathers the rows of its users once (`NextLocationInputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stgraph.data.checkins.sessions import Sessions
from stgraph.data.events import EventLog
from stgraph.tasks.next_location.batch import (
    NextLocationBatch,
    NextLocationInputs,
    NextLocationTargets,
)


def time_features(time: np.ndarray, user: np.ndarray) -> tuple[np.ndarray, ...]:
    """Hour of day (0..23), weekday (0 = Monday) and hours since the user's previous event
    (0 for a user's first) of events sorted by user, then time."""
    seconds = np.asarray(time).astype("datetime64[s]").astype(np.int64)
    days = np.floor_divide(seconds, 86_400)
    hour = (seconds - days * 86_400) // 3_600
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    gap = np.zeros(len(seconds), dtype=np.float32)
    if len(seconds) > 1:
        same_user = user[1:] == user[:-1]
        gap[1:] = np.where(same_user, (seconds[1:] - seconds[:-1]) / 3_600, 0.0)
    return hour.astype(np.int64), weekday.astype(np.int64), gap


def seen_before(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """For each event, whether its user had an earlier event with the same ``item``."""
    key = user.astype(np.int64) * (int(item.max(initial=0)) + 1) + item
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)] < np.arange(len(key))


@dataclass(frozen=True)
class SplitSamples:
    """The samples of one split, sorted by user, then time.

    Attributes:
        target: ``[N]`` event index of each sample's target (its session's last check-in).
        user: ``[N]`` the sample's user.
        location, category: ``[N]`` targets (-1: location unseen in training / no categories).
        recurring, explorative: ``[N]`` the HGARN subsets, exact per sample.
        users: ``[U]`` distinct users with samples; ``first``/``count``: their sample ranges.
        length: ``[U]`` each user's row length (up to its last sample's input check-in).
    """

    target: np.ndarray
    user: np.ndarray
    location: np.ndarray
    category: np.ndarray
    recurring: np.ndarray
    explorative: np.ndarray
    users: np.ndarray
    first: np.ndarray
    count: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


class SampleIndex:
    """Per-event features and per-split samples of ``sessions``, and the batches built from them.

    Args:
        sessions: the sessions (their log sorted by user, then time).
        seen: ``[L]`` whether each location occurs in the training view (others can't be ranked).
    """

    def __init__(self, sessions: Sessions, seen: np.ndarray) -> None:
        log: EventLog = sessions.log
        self.log = log
        self.user_start = np.searchsorted(log.user, np.arange(log.num_users)).astype(np.int64)
        hour, weekday, gap = time_features(log.time, log.user)
        has_categories = log.category is not None and log.num_categories > 0
        category = log.category if has_categories else np.zeros(log.num_events, np.int64)
        self._events = {
            "location": torch.from_numpy(log.location.astype(np.int64)),
            "category": torch.from_numpy(category.astype(np.int64)),
            "hour": torch.from_numpy(hour),
            "weekday": torch.from_numpy(weekday),
            "gap_hours": torch.from_numpy(gap),
        }
        location_seen = seen_before(log.user, log.location)
        if "unknown_location" in log.attrs:  # distinct places share that id: never "recurring"
            location_seen &= log.location != log.attrs["unknown_location"]
        if has_categories:
            category_seen = seen_before(log.user, category)
            recurring, explorative = location_seen & category_seen, ~location_seen & ~category_seen
        else:  # without categories the subsets turn on the location alone
            recurring, explorative = location_seen, ~location_seen
        self.splits: dict[str, SplitSamples] = {}
        for split in ("train", "val", "test"):
            ids = sessions.samples(split)
            target = sessions.bounds[ids + 1] - 1
            user = sessions.user[ids]
            keep = target > self.user_start[user]  # a sample needs at least one input check-in
            target, user = target[keep], user[keep]
            location = log.location[target]
            users, first, count = np.unique(user, return_index=True, return_counts=True)
            last = target[first + count - 1]
            self.splits[split] = SplitSamples(
                target=target,
                user=user,
                location=np.where(seen[location], location, -1).astype(np.int64),
                category=(category[target] if has_categories else np.full(len(target), -1)),
                recurring=recurring[target],
                explorative=explorative[target],
                users=users,
                first=first,
                count=count,
                length=last - self.user_start[users],
            )

    # ------------------------------------------------------------------ batches
    def batch(self, split: str, samples: np.ndarray) -> NextLocationBatch:
        """The packed batch of ``samples`` (indices into the split's samples, any order): one row
        per user, rows sorted by length (longest first), samples by row, then time."""
        s = self.splits[split]
        samples = np.asarray(samples, dtype=np.int64)
        samples = samples[np.lexsort((s.target[samples], s.user[samples]))]
        user, target = s.user[samples], s.target[samples]
        row_users, row_of_sample = np.unique(user, return_inverse=True)
        row_of_sample = row_of_sample.reshape(-1)
        start = self.user_start[row_users]
        lengths = np.zeros(len(row_users), dtype=np.int64)
        np.maximum.at(lengths, row_of_sample, target - start[row_of_sample])
        order = np.argsort(-lengths, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        sample_order = np.lexsort((target, rank[row_of_sample]))
        samples, row_of_sample = samples[sample_order], rank[row_of_sample][sample_order]
        start, lengths, row_users = start[order], lengths[order], row_users[order]

        width = int(lengths.max()) if len(lengths) else 0
        steps = torch.arange(width)
        valid = steps[None, :] < torch.from_numpy(lengths)[:, None]
        grid = torch.where(valid, torch.from_numpy(start)[:, None] + steps, 0)
        per_step = {
            name: torch.where(valid, values[grid], torch.zeros((), dtype=values.dtype))
            for name, values in self._events.items()
        }
        query_pos = s.target[samples] - 1 - self.user_start[s.user[samples]]
        inputs = NextLocationInputs(
            **per_step,
            user=torch.from_numpy(row_users.astype(np.int64)),
            lengths=torch.from_numpy(lengths),
            query_row=torch.from_numpy(row_of_sample.astype(np.int64)),
            query_pos=torch.from_numpy(query_pos.astype(np.int64)),
        )
        targets = NextLocationTargets(
            location=torch.from_numpy(s.location[samples]),
            category=torch.from_numpy(np.asarray(s.category[samples], dtype=np.int64)),
            recurring=torch.from_numpy(s.recurring[samples]),
            explorative=torch.from_numpy(s.explorative[samples]),
        )
        return NextLocationBatch(inputs, targets)

    def packed_groups(
        self,
        split: str,
        batch_size: int,
        shuffle: bool,
        seed: int,
        epoch: int,
        rank: int,
        world_size: int,
    ) -> list[np.ndarray]:
        """This rank's batches as arrays of sample indices: users whole, in a permutation that
        depends only on ``(seed, epoch)`` (by row length, longest first, without shuffling),
        cut into `num_packed` groups of about equal sample counts, dealt round-robin."""
        s = self.splits[split]
        groups = num_packed(len(s), len(s.users), batch_size, world_size)
        if groups == 0:
            return []
        if shuffle:
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(len(s.users), generator=generator).numpy()
        else:
            order = np.argsort(-s.length, kind="stable")
        bounds = balanced_cuts(s.count[order], groups)
        mine = range(rank, groups, world_size)
        return [_user_samples(s, order[bounds[g] : bounds[g + 1]]) for g in mine]

    def bootstrap_groups(
        self, split: str, batch_size: int, seed: int, epoch: int, rank: int, world_size: int
    ) -> list[np.ndarray]:
        """HGARN's resampling (spec section 5): ``N // batch_size`` batches per epoch, each
        ``batch_size`` samples drawn without replacement but independently of the other batches
        (some samples repeat in an epoch, others are left out); round-robin over ranks."""
        n = len(self.splits[split])
        count = num_bootstrap(n, batch_size, world_size)
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        draws = [torch.randperm(n, generator=generator)[:batch_size] for _ in range(count)]
        return [draws[g].numpy() for g in range(rank, count, world_size)]


def num_packed(samples: int, users: int, batch_size: int, world_size: int) -> int:
    """How many packed batches a split gives, over all ranks: enough for at most
    ``batch_size`` samples each on average, a multiple of ``world_size`` (every rank the same
    count, no sample dropped), at most one per user."""
    if samples == 0 or users < world_size:
        return 0
    wanted = world_size * -(-samples // (world_size * batch_size))
    return min(wanted, users - users % world_size)


def num_bootstrap(samples: int, batch_size: int, world_size: int) -> int:
    """Bootstrap batches per epoch over all ranks: ``samples // batch_size``, cut to a multiple
    of ``world_size``."""
    count = samples // batch_size
    return count - count % world_size


def balanced_cuts(counts: np.ndarray, groups: int) -> np.ndarray:
    """``groups + 1`` boundaries that cut a sequence of users (with ``counts`` samples each) into
    ``groups`` non-empty runs of about equal sample counts: a user joins the group its middle
    sample falls in, and boundaries are pushed apart where one user spans a whole group."""
    users = len(counts)
    middle = np.cumsum(counts) - counts / 2
    j = np.arange(groups)
    raw = np.searchsorted(middle, j * (counts.sum() / groups), side="left")
    cuts = j + np.maximum.accumulate(raw - j)
    cuts = np.minimum(cuts, users - groups + j)
    return np.append(cuts, users)


def _user_samples(s: SplitSamples, users: np.ndarray) -> np.ndarray:
    """Every sample index of ``users`` (positions in ``s.users``)."""
    first, count = s.first[users], s.count[users]
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(first, count) + offsets
