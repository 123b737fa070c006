"""No leakage from validation or test check-ins: changing their locations and categories leaves
the graphs, the locations' categories and every fitted statistic of the next-location task and
its models unchanged, given the sessions; and, from the raw check-ins through `make_sessions`,
also the user and location filters and the vocabularies (counted on training check-ins only),
while the changed held-out targets stay in the test set as misses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from stgraph.data.checkins import CheckinConfig, make_sessions
from stgraph.data.checkins.log import make_log
from stgraph.data.checkins.sessions import TEST, VAL, Sessions
from stgraph.data.checkins.vocabulary import UNKNOWN
from stgraph.data.events import EventLog
from stgraph.models import build_model
from stgraph.tasks.next_location import NextLocationConfig, NextLocationTask


def sessions(seed: int = 0) -> Sessions:
    """8 users x 6 sessions of 3 check-ins at 12 locations (4 categories) with coordinates a
    few tens of metres apart; sessions split history, train x3, validation, test."""
    rng = np.random.default_rng(seed)
    users, per_user, per_session = 8, 6, 3
    n = users * per_user * per_session
    user = np.repeat(np.arange(users), per_user * per_session)
    hours = np.tile(np.arange(per_user * per_session) * 7, users)
    location = rng.integers(0, 12, n)
    log = EventLog(
        user=user,
        time=np.datetime64("2024-01-01T08:00", "s") + hours * np.timedelta64(3600, "s"),
        location=location,
        users=np.array([f"u{u}" for u in range(users)], dtype=object),
        locations=np.array([f"l{i}" for i in range(12)], dtype=object),
        category=location % 4,
        categories=np.array(list("wxyz"), dtype=object),
        coords=np.c_[40.7 + np.arange(12) * 3e-4, -74.0 + np.zeros(12)],
    )
    bounds = np.arange(0, n + 1, per_session)
    split = np.tile(np.array([-1, 0, 0, 0, VAL, TEST], dtype=np.int8), users)
    return Sessions(log, bounds, np.repeat(np.arange(users), per_user), split)


def perturbed(original: Sessions, seed: int = 1) -> Sessions:
    """The same sessions with the locations (and so categories) of every validation and test
    check-in redrawn."""
    per_event = np.repeat(original.split, np.diff(original.bounds))
    held_out = (per_event == VAL) | (per_event == TEST)
    location = original.log.location.copy()
    location[held_out] = np.random.default_rng(seed).integers(0, 12, held_out.sum())
    log = dataclasses.replace(original.log, location=location, category=location % 4)
    return dataclasses.replace(original, log=log)


def assert_same_training(a: NextLocationTask, b: NextLocationTask) -> None:
    """Graphs, each location's category and the fitted baselines' statistics are equal."""
    assert set(a.context.graphs) == set(b.context.graphs)
    for name, graph in a.context.graphs.items():
        other = b.context.graphs[name]
        assert torch.equal(graph.edge_index, other.edge_index), name
        assert torch.equal(graph.edge_weight, other.edge_weight), name
    assert torch.equal(a.context.location_category, b.context.location_category)
    for model in ("most-frequent", "markov"):
        fitted = []
        for task in (a, b):
            built = build_model(model, None, task.context)
            built.fit_train(task.train_view)
            fitted.append(built.state_dict())
        for key, value in fitted[0].items():
            assert torch.equal(value, fitted[1][key]), (model, key)


def test_graphs_categories_and_fitted_statistics_ignore_held_out_check_ins():
    config = NextLocationConfig(radius_km=0.1)
    clean, changed = sessions(), perturbed(sessions())
    assert not np.array_equal(clean.log.location, changed.log.location)  # the change is real
    a, b = NextLocationTask(clean, config), NextLocationTask(changed, config)
    assert set(a.context.graphs) == {"location", "location_category", "category"}
    assert_same_training(a, b)


def raw_checkins(perturb: bool) -> pd.DataFrame:
    """8 users x 6 ISO weeks x 3 check-ins (Monday, Wednesday, Friday: no same-day repeats to
    merge) at 12 places l0..l11 with categories and coordinates. The last two weeks become
    validation and test (H T T T V X); ``perturb`` redraws their places, half of them at new
    places n0, n1, ... that occur nowhere else."""
    rng = np.random.default_rng(0)
    users, weeks, per_week = 8, 6, 3
    user = np.repeat(np.arange(users), weeks * per_week)
    week = np.tile(np.repeat(np.arange(weeks), per_week), users)
    day = np.tile(np.arange(per_week) * 2, users * weeks)
    place = rng.integers(0, 12, len(user)).astype(object)
    names = np.array([f"l{p}" for p in place], dtype=object)
    if perturb:
        held_out = week >= weeks - 2
        redrawn = rng.integers(0, 12, held_out.sum())
        fresh = rng.random(held_out.sum()) < 0.5
        names[held_out] = np.where(
            fresh,
            [f"n{k}" for k in range(held_out.sum())],
            [f"l{p}" for p in redrawn],
        )
    index = np.array([int(n[1:]) + (100 if n[0] == "n" else 0) for n in names])
    return pd.DataFrame(
        {
            "user": [f"u{u}" for u in user],
            "time": pd.Timestamp("2024-01-01 09:00") + pd.to_timedelta(week * 7 + day, "D"),
            "location": names,
            "category": [f"c{i % 4}" if i < 100 else f"new{i % 3}" for i in index],
            "lat": 40.7 + (index % 100) * 3e-4 + (index >= 100) * 0.1,
            "lon": -74.0 + np.zeros(len(index)),
        }
    )


def test_raw_held_out_check_ins_decide_no_filter_vocabulary_or_statistic():
    config = CheckinConfig(min_user_records=5, min_location_records=5)
    clean = make_sessions(make_log(raw_checkins(False), "raw"), config)
    changed = make_sessions(make_log(raw_checkins(True), "raw"), config)
    held_out = np.repeat(changed.split, np.diff(changed.bounds)) >= VAL
    names = changed.log.locations[changed.log.location]
    assert (names[held_out] == UNKNOWN).any()  # the new places reached the held-out sessions
    # The split, the filters and the vocabularies are the same.
    assert np.array_equal(clean.bounds, changed.bounds)
    assert np.array_equal(clean.split, changed.split)
    for vocabulary in ("users", "locations", "categories"):
        assert list(getattr(clean.log, vocabulary)) == list(getattr(changed.log, vocabulary))
    np.testing.assert_array_equal(clean.log.coords, changed.log.coords)
    assert clean.log.num_locations < 12 + 1  # the location filter did remove a place
    views = clean.train_view().log, changed.train_view().log
    for column in ("user", "time", "location", "category"):
        assert np.array_equal(getattr(views[0], column), getattr(views[1], column)), column
    task_config = NextLocationConfig(radius_km=0.1)
    a, b = NextLocationTask(clean, task_config), NextLocationTask(changed, task_config)
    assert set(a.context.graphs) == {"location", "location_category", "category"}
    assert_same_training(a, b)
    # Every held-out sample stays; those whose target is the unknown place are misses, and not
    # "recurring" (distinct places share the id).
    for split in ("val", "test"):
        assert len(a.index.splits[split]) == len(b.index.splits[split]) > 0
    test = b.index.splits["test"]
    unknown = changed.log.location[test.target] == changed.log.attrs["unknown_location"]
    assert unknown.any() and (test.location[unknown] == -1).all()
    assert not test.recurring[unknown].any()
    # The official order lets the held-out check-ins into the vocabulary.
    faithful = dataclasses.replace(config, faithful_vocabulary=True)
    vocabularies = [
        list(make_sessions(make_log(raw_checkins(p), "raw"), faithful).log.locations)
        for p in (False, True)
    ]
    assert vocabularies[0] != vocabularies[1]


def test_the_change_does_reach_the_held_out_targets():
    """The perturbation is not vacuous: validation and test targets differ."""
    a = NextLocationTask(sessions(), NextLocationConfig())
    b = NextLocationTask(perturbed(sessions()), NextLocationConfig())
    targets = [
        torch.cat([batch.targets.location for batch in task.batches("test", 64)]) for task in (a, b)
    ]
    assert not torch.equal(*targets)
