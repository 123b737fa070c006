"""The data layer's edge-table parser against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgraph.data.edges import edge_distance_matrix, parse_edge_list
from stgraph.errors import InputError

INF = np.inf
IDS = ["a", "b", "c"]

# (a, b) is listed three times (rows 0, 2, 4: 3, 5, 2), (b, a) twice (rows 1, 5: 1, 6), (b, c) once.
ROWS = pd.DataFrame(
    [
        ("a", "b", 3.0),
        ("b", "a", 1.0),
        ("a", "b", 5.0),
        ("b", "c", 2.0),
        ("a", "b", 2.0),
        ("b", "a", 6.0),
    ],
    columns=["from", "to", "cost"],
)


def as_lists(edges) -> tuple[list, list, list]:
    return edges.src.tolist(), edges.dst.tolist(), edges.weight.tolist()


# Directed: each pair resolved on its own. Edges (a, b), (b, a), (b, c) in that order.
@pytest.mark.parametrize(
    ("rule", "weights"),
    [
        ("first", [3.0, 1.0, 2.0]),
        ("last", [2.0, 6.0, 2.0]),
        ("min", [2.0, 1.0, 2.0]),
        ("max", [5.0, 6.0, 2.0]),
        ("mean", [10.0 / 3.0, 7.0 / 2.0, 2.0]),
    ],
)
def test_duplicate_rules_directed(rule, weights):
    edges = parse_edge_list(ROWS, IDS, duplicates=rule)
    src, dst, got = as_lists(edges)
    assert (src, dst) == ([0, 1, 1], [1, 0, 2])
    assert got == pytest.approx(weights, rel=1e-7)


# Symmetric: (c, b) mirrors (b, c). first/last keep each listed direction as its rule resolved
# it; min/max combine both directions; mean is the mean of the two per-direction means
# (10/3 and 7/2 -> 41/12), not the mean of all five rows (17/5).
@pytest.mark.parametrize(
    ("rule", "ab", "ba"),
    [
        ("first", 3.0, 1.0),
        ("last", 2.0, 6.0),
        ("min", 1.0, 1.0),
        ("max", 6.0, 6.0),
        ("mean", 41.0 / 12.0, 41.0 / 12.0),
    ],
)
def test_duplicate_rules_symmetric(rule, ab, ba):
    edges = parse_edge_list(ROWS, IDS, duplicates=rule, symmetric=True)
    src, dst, got = as_lists(edges)
    assert (src, dst) == ([0, 1, 1, 2], [1, 0, 2, 1])
    assert got == pytest.approx([ab, ba, 2.0, 2.0], rel=1e-7)


def test_duplicates_error_passes_unique_pairs_and_names_a_repeated_one():
    unique = ROWS.iloc[[0, 1, 3]]  # (a, b) 3, (b, a) 1, (b, c) 2
    assert as_lists(parse_edge_list(unique, IDS, duplicates="error")) == (
        [0, 1, 1],
        [1, 0, 2],
        [3.0, 1.0, 2.0],
    )
    # Symmetric without repeats: the listed direction wins, (c, b) is the mirror of (b, c).
    assert as_lists(parse_edge_list(unique, IDS, duplicates="error", symmetric=True)) == (
        [0, 1, 1, 2],
        [1, 0, 2, 1],
        [3.0, 1.0, 2.0, 2.0],
    )
    # The first repeated pair in (from, to) order is named, with its own count.
    rows = pd.DataFrame([("b", "c", 1)] * 3 + [("a", "b", 1), ("a", "b", 2)])
    with pytest.raises(InputError, match=r"^PEMS08.csv: pair \(a, b\) is listed 2 times"):
        parse_edge_list(rows, IDS, duplicates="error", what="PEMS08.csv")


def test_output_sorted_typed_and_zero_weights_kept():
    rows = pd.DataFrame({"from": ["c", "b", "a"], "to": ["c", "a", "c"], "cost": [0.0, 1.5, 7]})
    edges = parse_edge_list(rows, IDS)
    assert as_lists(edges) == ([0, 1, 2], [2, 0, 2], [7.0, 1.5, 0.0])
    assert edges.src.dtype == np.int64 and edges.dst.dtype == np.int64
    assert edges.weight.dtype == np.float32
    src, dst, weight = edges  # plain arrays, unpackable
    assert all(isinstance(part, np.ndarray) for part in (src, dst, weight))
    unweighted = parse_edge_list(np.array([["b", "c"], ["a", "b"]]), IDS)
    assert as_lists(unweighted) == ([0, 1], [1, 2], [1.0, 1.0])


def test_ids_compared_as_strings():
    rows = np.array([[400001, 400017, 5.5], [400017.0, 400030.0, 1.0]])
    edges = parse_edge_list(rows, ("400001", "400017", "400030"))
    assert as_lists(edges) == ([0, 1], [1, 2], [5.5, 1.0])
    # String ends (padded) against integer node ids.
    rows = pd.DataFrame({"f": ["400030", " 400017"], "t": [" 400001 ", "400030"]})
    assert as_lists(parse_edge_list(rows, [400001, 400017, 400030]))[:2] == ([1, 2], [2, 0])
    # A float column (a CSV with a blank cell elsewhere reads 400001 as 400001.0) still matches.
    rows = pd.DataFrame({"f": [400030.0, 400017.0], "t": ["400001", "400030"], "w": [1, 2]})
    assert as_lists(parse_edge_list(rows, ["400001", "400017", "400030"])) == (
        [1, 2],
        [2, 0],
        [2.0, 1.0],
    )


def test_unknown_ids_error_or_drop():
    rows = pd.DataFrame(
        [("a", "b", 1.0), ("b", "zz", 2.0), ("yy", "a", 1.0), ("c", "a", 4.0), ("zz", "a", "x")]
    )
    with pytest.raises(InputError, match=r"^roads.csv: row 1 names node id 'zz'.*3 row\(s\)"):
        parse_edge_list(rows, IDS, what="roads.csv")
    # Dropped rows are not checked further: row 4's weight 'x' is ignored with it.
    kept = parse_edge_list(rows, IDS, unknown="drop")
    assert as_lists(kept) == ([0, 2], [1, 0], [1.0, 4.0])
    kept_sym = parse_edge_list(rows, IDS, unknown="drop", symmetric=True)
    assert as_lists(kept_sym) == ([0, 0, 1, 2], [1, 2, 0, 0], [1.0, 4.0, 1.0, 4.0])
    nothing = parse_edge_list(rows.iloc[[1, 2]], IDS, unknown="drop")
    assert as_lists(nothing) == ([], [], [])
    assert (edge_distance_matrix(*nothing, 3) == INF).all()


@pytest.mark.parametrize(
    ("rows", "ids", "kwargs", "message"),
    [
        (np.zeros((2, 4)), IDS, {}, r"^edges.csv: expected 2 or 3 columns"),
        (pd.DataFrame([("a", "b", "x")]), IDS, {}, r"^edges.csv: row 0 has a missing or non"),
        (pd.DataFrame([("a", "b", None)]), IDS, {}, r"^edges.csv: row 0 has a missing or non"),
        (pd.DataFrame([("a", "b")]), ["a", "a", "b"], {}, r"^edges.csv: node id 'a' appears"),
        (pd.DataFrame([("a", "b", 1.0)]), IDS, {"duplicates": "sum"}, "duplicates must be"),
        (pd.DataFrame([("a", "b", 1.0)]), IDS, {"unknown": "skip"}, "unknown must be"),
    ],
)
def test_rejects_bad_input(rows, ids, kwargs, message):
    with pytest.raises(InputError, match=message):
        parse_edge_list(rows, ids, what="edges.csv", **kwargs)


def test_edge_distance_matrix():
    rows = pd.DataFrame([("a", "b", 1.0), ("b", "c", 0.0), ("c", "b", 2.5)])
    edges = parse_edge_list(rows, IDS)
    expected = np.array([[INF, 1.0, INF], [INF, INF, 0.0], [INF, 2.5, INF]])
    got = edge_distance_matrix(*edges, len(IDS))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        edge_distance_matrix(*edges, 3, fill=-1.0), np.where(np.isinf(expected), -1.0, expected)
    )
    # Weights are float32, as a Graph keeps them: 0.1 comes back as float32(0.1).
    point_one = parse_edge_list(pd.DataFrame([("a", "c", 0.1)]), IDS)
    assert edge_distance_matrix(*point_one, 3)[0, 2] == float(np.float32(0.1))


def test_graph_builder_wraps_the_same_arrays():
    from stgraph.graphs import from_edge_list, to_distance_matrix

    for rule in ("first", "last", "min", "max", "mean"):
        for symmetric in (False, True):
            edges = parse_edge_list(ROWS, IDS, duplicates=rule, symmetric=symmetric)
            graph = from_edge_list(ROWS, IDS, duplicates=rule, symmetric=symmetric)
            assert graph.num_nodes == 3
            assert graph.edge_index.tolist() == [edges.src.tolist(), edges.dst.tolist()]
            assert graph.edge_weight.tolist() == edges.weight.tolist()
            np.testing.assert_array_equal(
                to_distance_matrix(graph), edge_distance_matrix(*edges, 3)
            )
