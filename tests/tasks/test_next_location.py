"""The next-location task on a hand-made log of three users: samples, packed rows, targets and
subsets, the MAHEC loss, batching over epochs and ranks, micro-batches and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from stgraph.data.checkins.sessions import HISTORY, TEST, TRAIN, VAL, Sessions
from stgraph.data.events import EventLog
from stgraph.errors import InputError
from stgraph.tasks import TASKS
from stgraph.tasks.next_location import (
    NextLocationConfig,
    NextLocationOutput,
    NextLocationTask,
)
from stgraph.tasks.next_location.loss import history_counts, longest_samples
from stgraph.tasks.next_location.samples import balanced_cuts, time_features

A, B, C, D, E = range(5)  # locations; their categories: a 0, b 1, c 2, d 0, e 1
LOCATION_CATEGORY = [0, 1, 2, 0, 1]
H, T, V, X = HISTORY, TRAIN, VAL, TEST

# (user, day of January 2024, hour, location); sessions given by their event ranges below
EVENTS = [
    (0, 1, 8, A), (0, 1, 9, B),  # 0-1 history
    (0, 2, 8, A), (0, 2, 12, C),  # 2-3 train: a, b, a -> c
    (0, 3, 8, B), (0, 3, 10, A),  # 4-5 train: a, b, a, c, b -> a
    (0, 4, 8, D), (0, 4, 9, A),  # 6-7 val
    (0, 5, 8, C), (0, 5, 18, E),  # 8-9 test: e never occurs in training
    (1, 1, 7, C),  # 10 history
    (1, 2, 7, C), (1, 2, 8, C),  # 11-12 train: c, c -> c (nothing else in the history)
    (1, 3, 7, B), (1, 3, 8, C),  # 13-14 val
    (1, 4, 7, A), (1, 4, 9, D),  # 15-16 test
    (2, 1, 10, B),  # 17 history
    (2, 2, 10, D), (2, 2, 11, D),  # 18-19 train
    (2, 3, 10, B), (2, 3, 12, C),  # 20-21 train
    (2, 4, 10, A), (2, 4, 11, B),  # 22-23 train
    (2, 5, 10, C), (2, 5, 11, A),  # 24-25 test
]  # fmt: skip
BOUNDS = [0, 2, 4, 6, 8, 10, 11, 13, 15, 17, 18, 20, 22, 24, 26]
SESSION_USER = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
SESSION_SPLIT = [H, T, T, V, X, H, T, V, X, H, T, T, T, X]


def toy_log(name: str = "toy") -> EventLog:
    user, day, hour, location = (np.array(column) for column in zip(*EVENTS))
    time = np.array(
        [np.datetime64(f"2024-01-{d:02d}T{h:02d}:00:00", "s") for d, h in zip(day, hour)]
    )
    return EventLog(
        user=user.astype(np.int64),
        time=time,
        location=location.astype(np.int64),
        users=np.array(["u0", "u1", "u2"], dtype=object),
        locations=np.array(["a", "b", "c", "d", "e"], dtype=object),
        category=np.array(LOCATION_CATEGORY)[location].astype(np.int64),
        categories=np.array(["food", "work", "home"], dtype=object),
        coords=np.zeros((5, 2)),
        name=name,
    )


def toy_sessions() -> Sessions:
    return Sessions(
        toy_log(),
        np.array(BOUNDS, dtype=np.int64),
        np.array(SESSION_USER, dtype=np.int64),
        np.array(SESSION_SPLIT, dtype=np.int8),
    )


def toy_task(**params) -> NextLocationTask:
    return NextLocationTask(toy_sessions(), NextLocationConfig(**params), graphs={})


def random_task(users: int = 12, seed: int = 0, **params) -> NextLocationTask:
    """Users with 3..9 sessions of 1..4 check-ins at 6 locations, split H, T.., V, X."""
    rng = np.random.default_rng(seed)
    rows, bounds, session_user, split = [], [0], [], []
    for u in range(users):
        sessions = int(rng.integers(3, 10))
        for s in range(sessions):
            for h in range(int(rng.integers(1, 5))):
                rows.append((u, s * 24 + h, int(rng.integers(0, 6))))
            bounds.append(len(rows))
            session_user.append(u)
            split.append(H if s == 0 else X if s == sessions - 1 else V if s == 1 else T)
    user, hours, location = (np.array(c, dtype=np.int64) for c in zip(*rows))
    log = EventLog(
        user=user,
        time=np.datetime64("2024-01-01T00:00", "s") + hours * np.timedelta64(3600, "s"),
        location=location,
        users=np.array([f"u{u}" for u in range(users)], dtype=object),
        locations=np.array(list("abcdef"), dtype=object),
    )
    sessions = Sessions(log, np.array(bounds), np.array(session_user), np.array(split, np.int8))
    return NextLocationTask(sessions, NextLocationConfig(**params), graphs={})


class Tiny(nn.Module):
    """Scores from the last input check-in's location and the user: causal by construction."""

    def __init__(self, users: int = 3, locations: int = 5, categories: int = 3) -> None:
        super().__init__()
        self.location = nn.Embedding(locations, 4)
        self.user = nn.Embedding(users, 4)
        self.head = nn.Linear(4, locations)
        self.category = nn.Linear(4, categories)

    def forward(self, inputs):
        last = inputs.location[inputs.query_row, inputs.query_pos]
        hidden = torch.tanh(self.location(last) + self.user(inputs.user[inputs.query_row]))
        return NextLocationOutput(self.head(hidden), self.category(hidden))


def constant_output(batch, location=(0.5, 0.4, 0.3, 0.2, 0.1), category=(0.3, 0.2, 0.1)):
    """Every sample scores a > b > c > d > e and food > work > home."""
    s = len(batch)
    return NextLocationOutput(
        torch.tensor(location).expand(s, -1).clone(), torch.tensor(category).expand(s, -1).clone()
    )


# ---------------------------------------------------------------------- samples and rows
def test_registered_with_its_sample_noun():
    assert TASKS.get("next-location") is NextLocationTask
    assert NextLocationTask.sample_noun == "sessions"


def test_one_sample_per_session_with_exact_targets_and_subsets():
    task = toy_task()
    train, val, test = (task.index.splits[s] for s in ("train", "val", "test"))
    assert train.target.tolist() == [3, 5, 12, 19, 21, 23]
    assert train.location.tolist() == [C, A, C, D, C, B]
    assert train.category.tolist() == [2, 0, 2, 0, 2, 1]
    # c after a, b, a: neither c nor home seen | a after a, b, a, c, b: both | c after c, c: both
    # d after b, d | c after b, d, d, b: neither | b after b, d, d, b, c, a
    assert train.recurring.tolist() == [False, True, True, True, False, True]
    assert train.explorative.tolist() == [True, False, False, False, True, False]
    assert val.target.tolist() == [7, 14] and val.recurring.tolist() == [True, True]
    # e (test of u0) never occurs in history or train sessions: it cannot be ranked (-1); its
    # category (work) is in the history, so the sample is neither recurring nor explorative
    assert test.target.tolist() == [9, 16, 25]
    assert test.location.tolist() == [-1, D, A]
    assert test.recurring.tolist() == [False, False, True]
    assert test.explorative.tolist() == [False, False, False]
    assert [task.num_samples(s) for s in ("train", "val", "test")] == [6, 2, 3]


def test_packed_rows_hold_each_users_history_up_to_its_last_query():
    task = toy_task()
    # batch size 3: users by row length (u2: 6, u0: 5, u1: 2) cut into two groups of samples
    # [u2 (3 samples)], [u0 (2), u1 (1)]
    batches = list(task.batches("train", 3))
    assert task.num_batches("train", 3) == len(batches) == 2
    inputs, targets = batches[1].inputs, batches[1].targets
    assert inputs.user.tolist() == [0, 1]
    assert inputs.lengths.tolist() == [5, 2]
    assert inputs.location.tolist() == [[A, B, A, C, B], [C, C, 0, 0, 0]]
    assert inputs.category.tolist() == [[0, 1, 0, 2, 1], [2, 2, 0, 0, 0]]
    assert inputs.hour.tolist() == [[8, 9, 8, 12, 8], [7, 7, 0, 0, 0]]
    assert inputs.weekday.tolist() == [[0, 0, 1, 1, 2], [0, 1, 0, 0, 0]]  # 2024-01-01: Monday
    assert inputs.gap_hours.tolist() == [[0, 1, 23, 4, 20], [0, 24, 0, 0, 0]]
    assert inputs.query_row.tolist() == [0, 0, 1]
    assert inputs.query_pos.tolist() == [2, 4, 1]
    assert targets.location.tolist() == [C, A, C]
    assert targets.category.tolist() == [2, 0, 2]
    assert targets.recurring.tolist() == [False, True, True]
    assert targets.explorative.tolist() == [True, False, False]


def test_validation_and_test_inputs_include_the_training_sessions():
    task = toy_task()
    (batch,) = task.batches("test", 10)
    inputs = batch.inputs
    assert inputs.user.tolist() == [0, 2, 1]  # longest row first
    assert inputs.lengths.tolist() == [9, 8, 6]
    assert inputs.location[2, :6].tolist() == [C, C, C, B, C, A]  # train and val of u1
    assert inputs.query_pos.tolist() == [8, 7, 5]
    assert batch.targets.location.tolist() == [-1, A, D]


def test_no_row_reaches_its_own_last_target():
    task = random_task(users=30)
    for split in ("train", "val", "test"):
        log = task.log
        for batch in task.batches(split, 7, shuffle=True):
            inputs = batch.inputs
            last = torch.zeros_like(inputs.lengths).scatter_reduce(
                0, inputs.query_row, inputs.query_pos, "amax"
            )
            assert torch.equal(inputs.lengths, last + 1)
            starts = task.index.user_start[inputs.user.numpy()]
            for row in range(len(inputs.user)):  # the row is the log's events, in order
                events = log.location[starts[row] : starts[row] + int(inputs.lengths[row])]
                assert inputs.location[row, : len(events)].tolist() == events.tolist()
            beyond = torch.arange(inputs.location.shape[1])[None] >= inputs.lengths[:, None]
            assert not inputs.location[beyond].any()


def test_time_features_are_per_user():
    time = np.array(["2024-01-07T23:30", "2024-01-08T01:00", "2024-01-08T02:00"], "datetime64[s]")
    hour, weekday, gap = time_features(time, np.array([0, 0, 1]))
    assert hour.tolist() == [23, 1, 2]
    assert weekday.tolist() == [6, 0, 0]  # Sunday, Monday
    assert gap.tolist() == [0.0, 1.5, 0.0]  # a new user starts at 0


# ---------------------------------------------------------------------- batching
def _sample_keys(batch):
    inputs = batch.inputs
    return list(zip(inputs.user[inputs.query_row].tolist(), inputs.query_pos.tolist()))


def test_every_sample_once_per_epoch_in_an_order_fixed_by_seed_and_epoch():
    task = random_task(users=40)
    everything = sorted(
        zip(task.index.splits["train"].user.tolist(), _positions(task, "train").tolist())
    )
    orders = {}
    for seed, epoch in ((0, 1), (0, 1), (0, 2), (1, 1)):
        batches = list(task.batches("train", 8, shuffle=True, seed=seed, epoch=epoch))
        keys = [k for b in batches for k in _sample_keys(b)]
        assert sorted(keys) == everything
        assert len(batches) == task.num_batches("train", 8)
        orders.setdefault((seed, epoch), []).append([b.inputs.user.tolist() for b in batches])
    assert orders[(0, 1)][0] == orders[(0, 1)][1]
    assert orders[(0, 1)][0] != orders[(0, 2)][0] != orders[(1, 1)][0]


def _positions(task, split):
    s = task.index.splits[split]
    return s.target - 1 - task.index.user_start[s.user]


def test_batches_keep_users_whole_and_near_the_batch_size():
    task = random_task(users=40)
    per_user = np.bincount(task.index.splits["train"].user)
    sizes = []
    for batch in task.batches("train", 8, shuffle=True, epoch=3):
        rows = batch.inputs.query_row
        users = batch.inputs.user.tolist()
        assert len(set(users)) == len(users)  # one row per user
        assert torch.bincount(rows).tolist() == per_user[users].tolist()  # all its samples
        assert batch.inputs.lengths.tolist() == sorted(batch.inputs.lengths.tolist())[::-1]
        sizes.append(len(batch))
    assert max(sizes) < 8 + per_user.max()
    assert len(sizes) == -(-sum(sizes) // 8)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_equal_shares_of_every_sample(world_size):
    task = random_task(users=25)
    shares = [
        [k for b in task.batches("val", 4, True, 0, 5, rank, world_size) for k in _sample_keys(b)]
        for rank in range(world_size)
    ]
    counts = {
        len(list(task.batches("val", 4, True, 0, 5, r, world_size))) for r in range(world_size)
    }
    assert counts == {task.num_batches("val", 4, world_size)}
    keys = [k for share in shares for k in share]
    assert len(keys) == len(set(keys)) == task.num_samples("val")


def test_balanced_cuts_give_non_empty_groups_even_past_a_large_user():
    # sample counts 1, 9, 1, 1 in 3 groups: the large user spans a whole group's share
    cuts = balanced_cuts(np.array([1, 9, 1, 1]), 3)
    assert cuts.tolist() == [0, 1, 2, 4]
    assert balanced_cuts(np.array([2, 2, 2, 2]), 2).tolist() == [0, 2, 4]


def test_bootstrap_draws_independent_batches_of_distinct_samples():
    task = random_task(users=30, batching="bootstrap")
    n = task.num_samples("train")
    batches = list(task.batches("train", 10, shuffle=True, seed=0, epoch=1))
    assert len(batches) == n // 10 == task.num_batches("train", 10)
    keys = [_sample_keys(b) for b in batches]
    assert all(len(k) == 10 == len(set(k)) for k in keys)
    assert len({k for ks in keys for k in ks}) < n  # repeats across batches leave some out
    again = list(task.batches("train", 10, shuffle=True, seed=0, epoch=1))
    assert [_sample_keys(b) for b in again] == keys
    # evaluation is packed, every sample once
    assert sum(len(b) for b in task.batches("val", 10)) == task.num_samples("val")


# ---------------------------------------------------------------------- loss
def _u0_batch(task):
    return task.index.batch("train", np.array([0, 1]))  # u0's samples: a,b,a -> c; ... -> a


def test_mahec_loss_against_a_hand_computation():
    task = toy_task()
    batch = _u0_batch(task)
    output = NextLocationOutput(
        torch.tensor([[1.0, 0, 0, 0, 0]]).repeat(2, 1), torch.tensor([[1.0, 0, 0]]).repeat(2, 1)
    )
    loss = task.loss(output, batch)
    z, zc = math.log(math.e + 4), math.log(math.e + 2)  # log-partition of both heads
    # sample 1: target c, history a (2 visits), b (1): q = .8 c + .2 (2/3 a + 1/3 b)
    #   -sum q log p = .8 z + .2 (2/3 (z - 1) + 1/3 z) = z - 0.2 * 2/3
    # sample 2: target a, history a, b, a, c, b without a: b 2/3, c 1/3
    #   = -(.8 (1 - z) - .2 z) = z - 0.8
    location = (z - 0.2 * 2 / 3) + (z - 0.8)
    category = (zc - 0.2 * 2 / 3) + (zc - 0.8)  # the same visits, by category
    assert loss.terms["location"].item() == pytest.approx(location, rel=1e-6)
    assert loss.terms["category"].item() == pytest.approx(category, rel=1e-6)
    assert loss.total.item() == pytest.approx(location + category, rel=1e-6)
    assert loss.weight.item() == 2
    plain = toy_task(target_weight=1.0, category=0.5).loss(output, batch)
    assert plain.terms["location"].item() == pytest.approx(2 * z - 1, rel=1e-6)  # CE only
    assert plain.total.item() == pytest.approx(2 * z - 1 + 0.5 * (2 * zc - 1), rel=1e-6)


def test_an_empty_history_gives_plain_cross_entropy_or_the_faithful_skip():
    batch = toy_task().index.batch("train", np.array([2]))  # u1: c, c -> c
    output = NextLocationOutput(torch.tensor([[0.0, 0, 2.0, 0, 0]]), None)
    ce = -torch.log_softmax(output.location, 1)[0, C].item()
    clean = toy_task().loss(output, batch)
    assert clean.total.item() == pytest.approx(ce) and clean.weight.item() == 1
    # with u0 in the batch: the faithful loss leaves u1's sample out but still counts it
    faithful, clean_task = toy_task(faithful_loss_divisor=True), toy_task()
    both = faithful.index.batch("train", np.array([0, 1, 2]))
    output = constant_output(both)
    skipped, kept = faithful.loss(output, both), clean_task.loss(output, both)
    alone = clean_task.loss(constant_output(batch), batch)
    assert skipped.total.item() == pytest.approx(kept.total.item() - alone.total.item())
    assert skipped.weight.item() == kept.weight.item() == 3


def test_a_target_unseen_in_training_is_left_out_of_the_loss():
    task = toy_task()
    (batch,) = task.batches("test", 10)  # u0's target e never occurs in training
    output = constant_output(batch)
    loss = task.loss(output, batch)
    assert batch.targets.location.tolist() == [-1, A, D]
    assert loss.weight.item() == 2 == task.loss_weight(batch, output).item()
    rest = [part for part in batch.split(1) if part.targets.location.item() >= 0]
    total = sum(task.loss(constant_output(part), part).total.item() for part in rest)
    assert loss.total.item() == pytest.approx(total)


def test_faithful_off_by_one_drops_the_smallest_id_of_the_longest_sample():
    task = toy_task()
    batch = task.index.batch("train", np.array([3, 4, 5]))  # u2: b,d -> d; ... -> c; ... -> b
    inputs = batch.inputs
    assert longest_samples(inputs).tolist() == [False, False, True]
    clean = history_counts(inputs.location, inputs, 5, None)
    assert clean.tolist() == [[0, 1, 0, 1, 0], [0, 2, 0, 2, 0], [1, 2, 1, 2, 0]]
    dropped = history_counts(inputs.location, inputs, 5, longest_samples(inputs))
    assert dropped.tolist() == [[0, 1, 0, 1, 0], [0, 2, 0, 2, 0], [0, 2, 1, 2, 0]]  # a gone


def test_micro_batches_give_the_full_batch_gradient():
    task = toy_task()
    (batch,) = task.batches("train", 100)
    torch.manual_seed(0)
    model = Tiny()

    def gradients(parts):
        model.zero_grad()
        weight = task.loss_weight(batch, None)
        for part in parts:
            (task.loss(model(part.inputs), part).total / weight).backward()
        return [p.grad.clone() for p in model.parameters()]

    parts = batch.split(2)
    assert [len(p) for p in parts] == [3, 2, 1]  # u2 alone exceeds 2 samples
    for full, split in zip(gradients([batch]), gradients(parts)):
        torch.testing.assert_close(full, split)


# ---------------------------------------------------------------------- metrics
def _scores(task, split):
    metrics = task.new_metrics()
    for batch in task.batches(split, 2):
        task.update_metrics(metrics, task.predict(constant_output(batch), batch, split), batch)
    return metrics.compute()


def test_metrics_over_a_split_equal_a_hand_computation():
    train = _scores(toy_task(), "train")
    # ranks under a > b > c > d > e: c 3, a 1, c 3, d 4, c 3, b 2
    assert train["acc@1"] == pytest.approx(1 / 6)
    assert train["acc@5"] == 1.0
    assert train["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 3 + 1 / 4 + 1 / 3 + 1 / 2) / 6)
    assert train["ndcg@5"] == pytest.approx(
        (3 / math.log2(4) + 1 + 1 / math.log2(5) + 1 / math.log2(3)) / 6
    )
    assert train["recurring/mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4 + 1 / 2) / 4)
    assert train["explorative/acc@1"] == 0.0
    assert train["explorative/mrr"] == pytest.approx(1 / 3)
    # categories: home 3, food 1, home 3, food 1, home 3, work 2
    assert train["category/acc@1"] == pytest.approx(2 / 6)
    assert train["category/mrr"] == pytest.approx((3 / 3 + 2 + 1 / 2) / 6)
    test = _scores(toy_task(), "test")
    # e cannot be ranked (a miss), d 4, a 1; no test sample is explorative
    assert test["acc@1"] == pytest.approx(1 / 3)
    assert test["acc@5"] == pytest.approx(2 / 3)
    assert test["mrr"] == pytest.approx((0 + 1 / 4 + 1) / 3)
    assert test["recurring/acc@1"] == 1.0
    assert math.isnan(test["explorative/mrr"])
    assert set(train) >= {"acc@10", "acc@20", "ndcg@10", "recurring/acc@5", "category/acc@5"}
    assert all(toy_task().goal(name) == "max" for name in train)


def test_metrics_state_adds_up_across_shards():
    task = toy_task()
    whole, parts = task.new_metrics(), [task.new_metrics(), task.new_metrics()]
    for number, batch in enumerate(task.batches("train", 2)):
        prediction = task.predict(constant_output(batch), batch, "train")
        task.update_metrics(whole, prediction, batch)
        task.update_metrics(parts[number % 2], prediction, batch)
    merged = task.new_metrics()
    merged.load_state(parts[0].state() + parts[1].state())
    assert merged.compute() == pytest.approx(whole.compute())


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="batching"):
        NextLocationConfig(batching="random")
    with pytest.raises(InputError, match="target_weight"):
        NextLocationConfig(target_weight=1.5)
    with pytest.raises(InputError, match="slot_hours"):
        NextLocationConfig(slot_hours=5)
    with pytest.raises(InputError, match="monitor must be one of .*recurring/acc@5"):
        NextLocationConfig(monitor="acc@3", ks=[1, 5])
    assert NextLocationConfig(monitor="explorative/ndcg@10").monitor == "explorative/ndcg@10"


# ---------------------------------------------------------------------- with the trainer
def cyclic_task(users: int = 16) -> NextLocationTask:
    """Each user walks the 6 locations in a cycle from their own start: learnable exactly."""
    bounds, session_user, split, user, location = [0], [], [], [], []
    for u in range(users):
        for s in range(6):
            for step in range(3):
                user.append(u)
                location.append((u + 3 * s + step) % 6)
            bounds.append(len(user))
            session_user.append(u)
            split.append(H if s == 0 else X if s == 5 else V if s == 4 else T)
    log = EventLog(
        user=np.array(user),
        time=np.datetime64("2024-01-01", "s") + np.arange(len(user)) * np.timedelta64(1, "h"),
        location=np.array(location),
        users=np.array([f"u{u}" for u in range(users)], dtype=object),
        locations=np.array(list("abcdef"), dtype=object),
    )
    sessions = Sessions(log, np.array(bounds), np.array(session_user), np.array(split, np.int8))
    return NextLocationTask(sessions, NextLocationConfig(ks=[1, 5]), graphs={})


def test_the_trainer_fits_a_next_location_model_in_micro_batches(tmp_path):
    from stgraph.models.base import NextLocationModel
    from stgraph.training.config import TrainConfig
    from stgraph.training.trainer import Trainer

    class TinyModel(NextLocationModel):
        def __init__(self, context):
            super().__init__(None, context)
            self.net = Tiny(context.num_users, context.num_locations, 1)

        def forward(self, inputs):
            return NextLocationOutput(self.net(inputs).location, None)

    task = cyclic_task()
    torch.manual_seed(0)
    model = TinyModel(task.context)
    config = TrainConfig(epochs=15, batch_size=8, micro_batch_size=2, lr=0.05, device="cpu")
    trainer = Trainer(task, model, config, tmp_path, quiet=True)
    before = trainer.evaluate("val")["acc@1"]
    result = trainer.fit()
    assert set(result.history[0]) >= {"val_mrr", "val_recurring/acc@1", "train_loss"}
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    metrics, predictions = trainer.predict_split("test")
    assert metrics.compute()["acc@1"] > 0.8 > before
    report = task.report("test", metrics, predictions, "tiny")
    assert len(report.tables["predictions/test_predictions.parquet"]) == 16 * 6
