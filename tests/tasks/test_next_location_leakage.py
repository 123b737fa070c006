"""No leakage from validation or test check-ins: changing their locations and categories leaves
the graphs, the locations' categories and every fitted statistic of the next-location task and
its models unchanged (given the sessions: the vocabularies and filters of `make_sessions` are
data preparation over all check-ins, see its docstring)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stgraph.data.checkins.sessions import TEST, VAL, Sessions
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


def test_graphs_categories_and_fitted_statistics_ignore_held_out_check_ins():
    config = NextLocationConfig(radius_km=0.1)
    clean, changed = sessions(), perturbed(sessions())
    assert not np.array_equal(clean.log.location, changed.log.location)  # the change is real
    a, b = NextLocationTask(clean, config), NextLocationTask(changed, config)
    assert set(a.context.graphs) == {"location", "location_category", "category"}
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


def test_the_change_does_reach_the_held_out_targets():
    """The perturbation is not vacuous: validation and test targets differ."""
    a = NextLocationTask(sessions(), NextLocationConfig())
    b = NextLocationTask(perturbed(sessions()), NextLocationConfig())
    targets = [
        torch.cat([batch.targets.location for batch in task.batches("test", 64)]) for task in (a, b)
    ]
    assert not torch.equal(*targets)
