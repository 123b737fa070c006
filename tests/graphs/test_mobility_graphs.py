"""Mobility graph builders against brute force and hand-computed tiny examples."""

from __future__ import annotations

import numpy as np
import pytest

from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.graphs.mobility import (
    cooccurrence_graph,
    haversine_km,
    membership_graph,
    radius_graph,
)


def edges(graph: Graph) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in graph.edge_index.T.tolist()}


def test_earth_radius_is_the_one_of_the_other_builders():
    from stgraph.graphs import builders, mobility

    assert mobility.EARTH_RADIUS_KM == builders.EARTH_RADIUS_KM


def test_haversine_known_distance():
    # One degree of latitude on the 6371.0088 km sphere.
    d = haversine_km(np.array([0.0, 10.0]), np.array([1.0, 10.0]))
    assert d == pytest.approx(6371.0088 * np.pi / 180, rel=1e-12)


def test_radius_graph_matches_brute_force_haversine():
    rng = np.random.default_rng(0)
    # 400 points in a ~2 km box around Manhattan, so a 0.3 km radius links many pairs.
    coords = np.column_stack([40.75 + rng.random(400) * 0.02, -73.99 + rng.random(400) * 0.02])
    coords[5] = coords[4]  # a duplicate venue: distance 0 <= min_km, never linked
    graph = radius_graph(coords, radius_km=0.3, min_km=0.001)
    dist = haversine_km(coords[:, None], coords[None, :])
    want = np.argwhere((dist > 0.001) & (dist < 0.3))
    assert edges(graph) == {(int(a), int(b)) for a, b in want}
    assert len(want) > 500 and graph.num_nodes == 400
    assert (4, 5) not in edges(graph)
    assert bool((graph.edge_weight == 1).all())


def test_radius_graph_exact_boundary_and_missing_coords():
    # Points on a meridian at 0.05 km steps: the 0.1 km pair is excluded (strict <).
    step = 0.05 / (6371.0088 * np.pi / 180)
    coords = np.array([[0.0, 0.0], [step, 0.0], [2 * step, 0.0], [np.nan, np.nan]])
    graph = radius_graph(coords, radius_km=0.1 + 1e-9)
    assert edges(graph) == {(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0)}
    graph = radius_graph(coords, radius_km=0.1 - 1e-9)
    assert edges(graph) == {(0, 1), (1, 0), (1, 2), (2, 1)}
    assert graph.num_nodes == 4  # the location without coordinates has no edge


@pytest.mark.parametrize(
    ("coords", "radius", "message"),
    [
        (np.zeros((3, 3)), 0.1, r"\[L, 2\]"),
        (np.array([[95.0, 0.0]]), 0.1, "latitudes"),
        (np.array([[np.inf, 0.0]]), 0.1, "inf"),
        (np.zeros((3, 2)), 0.0, "min_km < radius_km"),
    ],
)
def test_radius_graph_rejects_bad_input(coords, radius, message):
    with pytest.raises(InputError, match=message):
        radius_graph(coords, radius_km=radius)


def test_membership_graph_most_frequent_category_with_ties_and_unseen():
    # location 0: categories 2, 2, 1 -> 2; location 1: 0, 1 (tie) -> 0; location 2 unseen;
    # location 3: 1.
    location = np.array([0, 0, 0, 1, 1, 3])
    category = np.array([2, 2, 1, 1, 0, 1])
    graph, location_category = membership_graph(location, category, 4, 3)
    assert location_category.tolist() == [2, 0, -1, 1]
    assert location_category.dtype == np.int64
    assert graph.num_nodes == 7
    assert edges(graph) == {(0, 4 + 2), (1, 4 + 0), (3, 4 + 1)}  # category c is node L + c


def test_membership_graph_rejects_bad_ids():
    with pytest.raises(InputError, match="category ids must lie in"):
        membership_graph(np.array([0]), np.array([3]), 2, 3)
    with pytest.raises(InputError, match="2 locations but 1 categories"):
        membership_graph(np.array([0, 1]), np.array([0]), 2, 3)


def test_cooccurrence_graph_counts_distinct_pairs_per_user_and_slot():
    # slot = hour // 2. User 0, slot 4 (hours 8-9, two days): categories {0, 1, 2} -> pairs
    # 01, 02, 12 (+1 each, the repeat of 0 counts once). User 0, slot 10: {0, 1} -> 01.
    # User 1, slot 4: {0, 1} -> 01; user 1, slot 5: {3} alone -> nothing.
    user = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    category = np.array([0, 1, 0, 2, 0, 1, 0, 1, 3])
    hour = np.array([8, 9, 8, 9, 20, 21, 8, 8, 10])
    # M: M01 = 3, M02 = 1, M12 = 1 (both ways); sum 10 over 16 entries -> mean 0.625:
    # every co-occurring pair is kept.
    graph = cooccurrence_graph(user, category, hour, num_categories=4)
    assert edges(graph) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)}
    assert graph.num_nodes == 4
    # A count threshold of 2 keeps only 0-1; the 1-hour slots split user 0's 8h and 9h.
    assert edges(cooccurrence_graph(user, category, hour, 4, threshold=2)) == {(0, 1), (1, 0)}
    one_hour = cooccurrence_graph(user, category, hour, 4, slot_hours=1, threshold=1)
    # user 0: 8h {0}, 9h {1, 2}, 20h {0}, 21h {1}; user 1: 8h {0, 1} -> pairs 12 and 01
    assert edges(one_hour) == {(1, 2), (2, 1), (0, 1), (1, 0)}


def test_cooccurrence_graph_mean_threshold_drops_rare_pairs():
    # Pair 0-1 co-occurs in 10 (user, slot) cells, pair 2-3 in one: M sum = 22 over 16
    # entries, mean 1.375, so 2-3 (count 1) is dropped.
    user = np.repeat(np.arange(11), 2)
    category = np.array([0, 1] * 10 + [2, 3])
    hour = np.zeros(22, dtype=np.int64)
    assert edges(cooccurrence_graph(user, category, hour, 4)) == {(0, 1), (1, 0)}


def test_cooccurrence_graph_without_pairs_is_empty_not_complete():
    graph = cooccurrence_graph(np.array([0, 1]), np.array([0, 1]), np.array([3, 3]), 3)
    assert graph.num_edges == 0


def test_cooccurrence_graph_rejects_bad_input():
    with pytest.raises(InputError, match="hour ids must lie in"):
        cooccurrence_graph(np.array([0]), np.array([0]), np.array([24]), 2)
    with pytest.raises(InputError, match="slot_hours"):
        cooccurrence_graph(np.array([0]), np.array([0]), np.array([1]), 2, slot_hours=0)
    with pytest.raises(InputError, match="threshold"):
        cooccurrence_graph(np.array([0]), np.array([0]), np.array([1]), 2, threshold="median")
    with pytest.raises(InputError, match="differ in length"):
        cooccurrence_graph(np.array([0, 1]), np.array([0]), np.array([1]), 2)


def test_radius_graph_on_real_nyc_pois_matches_brute_force(shared_data):
    poi = np.load(shared_data / "mobility" / "foursquare-nyc-stan" / "NYC_POI.npy")
    coords = poi[np.argsort(poi[:, 0]), 1:][:1500]
    graph = radius_graph(coords, radius_km=0.1)
    dist = haversine_km(coords[:, None], coords[None, :])
    want = {(int(a), int(b)) for a, b in np.argwhere((dist > 0.001) & (dist < 0.1))}
    assert edges(graph) == want
    assert len(want) > 100  # dense Manhattan venues: many pairs within 100 m
