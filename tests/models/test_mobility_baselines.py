"""The count baselines against hand-computed scores; the GRU's shapes, causality and learning
are tested with HGARN's (tests/models/test_hgarn.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stgraph.data.checkins.sessions import CheckinTrainView
from stgraph.models import build_model
from tests.models.test_hgarn import L, make_context, make_inputs, train_view


def test_most_frequent_ranks_the_users_most_visited_first():
    model = build_model("most-frequent", {}, make_context())
    model.fit_train(train_view())
    # Row: 3 1 3 2 | 1 3 ; sample at position 3 has seen 3 twice, 1 and 2 once.
    inputs = make_inputs([[3, 1, 3, 2, 1, 3]], [(0, 3), (0, 0)])
    out = model(inputs)
    popularity = np.array([2, 3, 2, 1, 2, 0, 0]) / 3 * 1e-3  # training counts / max, scaled
    want = np.array([0, 1, 1, 2, 0, 0, 0]) + popularity
    np.testing.assert_allclose(out.location[0].numpy(), want, rtol=1e-6)
    assert out.location[0].argmax() == 3
    assert out.location[0, 1] > out.location[0, 2]  # tie on visits, 1 is more popular
    # The first sample has seen location 3 once: every other location ranks by popularity.
    assert out.location[1].argsort(descending=True)[:3].tolist() == [3, 1, 0]
    # Categories alike: row categories 1 0 1 1 -> counts [1, 3, 0] at position 3.
    assert out.category[0].round().tolist() == [1.0, 3.0, 0.0]


def test_markov_probabilities_equal_counted_transitions():
    model = build_model("markov", {}, make_context())
    model.fit_train(train_view())
    # Last locations at the query positions: 1, 2, 4 and 6 (no outgoing transition).
    inputs = make_inputs([[0, 1], [1, 2], [3, 4], [6, 6, 5, 6]], [(0, 1), (1, 1), (2, 1), (3, 3)])
    out = model(inputs).location
    want = torch.zeros(3, L)
    want[0, 2], want[0, 3] = 2 / 3, 1 / 3  # from 1: ->2 twice, ->3 once
    want[1, 0], want[1, 4] = 1 / 2, 1 / 2  # from 2: ->0, ->4
    want[2, 4] = 1.0  # from 4: ->4
    torch.testing.assert_close(out[:3], want, rtol=0, atol=2e-6)
    # Ties among unreachable locations follow the user's counts: row 0 visited 0 once.
    assert out[0, 0] > out[0, 5]
    # No transition from 6: the most-frequent score (6 seen three times, 5 once).
    assert out[3].argsort(descending=True)[:2].tolist() == [6, 5]
    torch.testing.assert_close(out[3, 6], torch.tensor(3.0), rtol=0, atol=1e-6)


def test_markov_reloads_its_fitted_tables_into_a_fresh_model():
    model = build_model("markov", {}, make_context())
    model.fit_train(train_view())
    fresh = build_model("markov", {}, make_context())
    fresh.load_state_dict(model.state_dict())
    inputs = make_inputs([[0, 1, 2]], [(0, 1), (0, 2)])
    torch.testing.assert_close(fresh(inputs).location, model(inputs).location)
    assert not fresh.trainable and sum(p.numel() for p in fresh.parameters()) == 0


@pytest.mark.parametrize("name", ["most-frequent", "markov", "gru"])
def test_baselines_without_categories_answer_locations_only(name):
    context = make_context(categories=False)
    model = build_model(name, {"hidden": 8} if name == "gru" else {}, context).eval()
    view = train_view()
    model.fit_train(
        CheckinTrainView(
            dataclasses.replace(view.log, category=None, categories=np.array([], dtype=object))
        )
    )
    inputs = make_inputs([[0, 1, 2, 0]], [(0, 1), (0, 3)])
    out = model(dataclasses.replace(inputs, category=torch.zeros_like(inputs.category)))
    assert out.category is None and out.location.shape == (2, L)
