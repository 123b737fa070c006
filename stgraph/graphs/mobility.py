"""Graphs over locations and venue categories, built from training check-ins only.

The three graphs of HGARN's hierarchy (Tang, He, Zhao, "Activity-aware Human Mobility Prediction
with Hierarchical Graph Attention Recurrent Network", IEEE T-ITS 2024, arXiv 2210.07765):

- `radius_graph`: locations closer than a radius (reads coordinates only);
- `membership_graph`: each location linked to its category (reads training check-ins'
  location and category columns);
- `cooccurrence_graph`: categories that the same user visits in the same time-of-day slot
  (reads training check-ins' user, category and hour columns).

Inputs are plain arrays: the caller passes the columns of the training view
(`stgraph.data.checkins.CheckinTrainView`), so nothing from validation or test check-ins can
enter a graph. Every function is vectorised (a k-d tree, sparse products), never a loop over
pairs. Bad input raises `InputError`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

from stgraph.errors import InputError
from stgraph.graphs.graph import Graph

# The mean Earth radius of `stgraph.graphs.builders`, not imported from there: that module pulls
# in torch_geometric and pandas, which these builders never need.
EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between rows of ``a`` and ``b`` (``[..., 2]`` lat/lon
    degrees), on a sphere of radius `EARTH_RADIUS_KM`."""
    lat1, lon1 = np.radians(a[..., 0]), np.radians(a[..., 1])
    lat2, lon2 = np.radians(b[..., 0]), np.radians(b[..., 1])
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _graph(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> Graph:
    """Unit-weight graph of edges ``src -> dst``, sorted by (source, target)."""
    order = np.lexsort((dst, src))
    edge_index = torch.as_tensor(np.stack([src[order], dst[order]]).astype(np.int64))
    return Graph(edge_index, torch.ones(len(order), dtype=torch.float32), num_nodes)


def _ids(values: np.ndarray, size: int, name: str, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise InputError(f"{where}: {name} must be a 1-D integer array, got {values.dtype}.")
    if values.size and (values.min() < 0 or values.max() >= size):
        raise InputError(
            f"{where}: {name} ids must lie in [0, {size}), got [{values.min()}, {values.max()}]."
        )
    return values.astype(np.int64)


def radius_graph(coords: np.ndarray, radius_km: float, min_km: float = 0.001) -> Graph:
    """Link locations whose great-circle distance ``d`` satisfies ``min_km < d < radius_km``.

    HGARN's location graph uses ``radius_km = 0.1`` and ``min_km = 0.001`` (distinct venues at
    the same spot are not linked). Symmetric, no self loops, weight 1.

    Candidate pairs come from a k-d tree over 3-D unit vectors, where the chord length
    ``2 sin(d / 2R)`` orders pairs as the great-circle distance does; the final test is the
    exact haversine distance. Locations without coordinates (a NaN row) get no edges.

    Args:
        coords: ``[L, 2]`` latitude and longitude in degrees.
        radius_km: link pairs strictly closer than this.
        min_km: and strictly farther apart than this.

    Raises:
        InputError: bad shape, infinite values, latitudes beyond +-90 or a bad radius.
    """
    pts = np.asarray(coords, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"radius_graph needs [L, 2] (lat, lon) coords, got shape {pts.shape}.")
    if not 0 <= min_km < radius_km:
        raise InputError(f"radius_graph needs 0 <= min_km < radius_km, got {min_km}, {radius_km}.")
    known = ~np.isnan(pts).any(axis=1)
    if not np.isfinite(pts[known]).all():
        raise InputError("radius_graph: coords hold inf.")
    if (np.abs(pts[known, 0]) > 90).any():
        raise InputError("radius_graph: latitudes beyond +-90; are the columns (lat, lon)?")
    index = np.flatnonzero(known)
    lat, lon = np.radians(pts[index, 0]), np.radians(pts[index, 1])
    unit = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    half_angle = min(radius_km / (2.0 * EARTH_RADIUS_KM), np.pi / 2)
    chord = 2.0 * np.sin(half_angle) * (1.0 + 1e-9)  # a hair wide: the exact test follows
    pairs = cKDTree(unit).query_pairs(chord, output_type="ndarray")
    i, j = index[pairs[:, 0]], index[pairs[:, 1]]
    dist = haversine_km(pts[i], pts[j])
    keep = (dist > min_km) & (dist < radius_km)
    i, j = i[keep], j[keep]
    return _graph(np.concatenate([i, j]), np.concatenate([j, i]), len(pts))


def membership_graph(
    location: np.ndarray, category: np.ndarray, num_locations: int, num_categories: int
) -> tuple[Graph, np.ndarray]:
    """Each location's category and the bipartite location -> category graph.

    A location's category is the most frequent category of its training check-ins (ties: the
    smallest id; -1 for a location never seen in training). HGARN's code takes the first
    category seen; a venue's category rarely changes, and the mode is robust where it does.

    Args:
        location, category: ``[E]`` the training check-ins' location and category ids.
        num_locations, num_categories: the vocabulary sizes ``L`` and ``C``.

    Returns:
        ``(graph, location_category)``: the graph over ``L + C`` nodes (category ``c`` is node
        ``L + c``) with one edge ``l -> L + category(l)`` of weight 1 per seen location, and
        the ``[L]`` int64 category of each location.

    Raises:
        InputError: columns of different lengths or ids out of range.
    """
    where = "membership_graph"
    location = _ids(location, num_locations, "location", where)
    category = _ids(category, num_categories, "category", where)
    if len(location) != len(category):
        raise InputError(f"{where}: {len(location)} locations but {len(category)} categories.")
    pair, counts = np.unique(location * num_categories + category, return_counts=True)
    loc, cat = np.divmod(pair, num_categories) if num_categories else (pair, pair)
    # Most frequent first, then the smallest category id; the first row of each location wins.
    order = np.lexsort((cat, -counts, loc))
    loc, cat = loc[order], cat[order]
    first = np.r_[True, loc[1:] != loc[:-1]] if len(loc) else np.zeros(0, bool)
    location_category = np.full(num_locations, -1, dtype=np.int64)
    location_category[loc[first]] = cat[first]
    graph = _graph(loc[first], num_locations + cat[first], num_locations + num_categories)
    return graph, location_category


def cooccurrence_graph(
    user: np.ndarray,
    category: np.ndarray,
    hour: np.ndarray,
    num_categories: int,
    slot_hours: int = 2,
    threshold: str | float = "mean",
) -> Graph:
    """Link categories that the same users visit in the same time-of-day slot.

    For every user and every slot ``hour // slot_hours`` (pooled over all days), each pair of
    distinct categories the user visited in that slot adds 1 to ``M[a, b]`` and ``M[b, a]``
    (HGARN, spec section 2). With ``B`` the binary (user, slot) x category incidence,
    ``M = B^T B`` with its diagonal zeroed.

    ``threshold="mean"`` keeps ``M[a, b] >= mean(M)``, the mean over all ``C x C`` entries,
    zeros and the (zero) diagonal included, as the official code does. Two guards against
    degenerate cases: never a self loop, and never a pair that never co-occurred (with an
    all-zero ``M`` the official rule would link every pair, since ``0 >= 0``). A number keeps
    pairs counted at least that many times (and at least once).

    Args:
        user, category, hour: ``[E]`` the training check-ins' user ids, category ids and local
            hours (0-23).
        num_categories: ``C``.
        slot_hours: width of a time-of-day slot in hours (HGARN: 2, giving 12 slots).
        threshold: ``"mean"`` or a minimum count.

    Returns:
        A symmetric graph over ``C`` nodes, weight 1.

    Raises:
        InputError: columns of different lengths, ids or hours out of range, a bad slot width
            or threshold.
    """
    where = "cooccurrence_graph"
    user = np.asarray(user)
    if user.ndim != 1 or (user.size and user.dtype.kind not in "iu"):
        raise InputError(f"{where}: user must be a 1-D integer array.")
    category = _ids(category, num_categories, "category", where)
    hour = _ids(hour, 24, "hour", where)
    if not len(user) == len(category) == len(hour):
        raise InputError(
            f"{where}: columns differ in length (user {len(user)}, category {len(category)}, "
            f"hour {len(hour)})."
        )
    if not isinstance(slot_hours, int | np.integer) or not 1 <= slot_hours <= 24:
        raise InputError(f"{where}: slot_hours must be an integer in [1, 24], got {slot_hours}.")
    if not (threshold == "mean" or (isinstance(threshold, int | float) and threshold >= 0)):
        raise InputError(f"{where}: threshold must be 'mean' or a count >= 0, got {threshold!r}.")
    slots = -(-24 // slot_hours)
    _, cell = np.unique(user.astype(np.int64) * slots + hour // slot_hours, return_inverse=True)
    ones = np.ones(len(cell), dtype=np.float64)
    incidence = sp.csr_matrix(
        (ones, (cell, category)), shape=(cell.max(initial=-1) + 1, num_categories)
    )
    incidence.sum_duplicates()
    incidence.data[:] = 1.0  # a category counts once per (user, slot), however often visited
    counts = (incidence.T @ incidence).tocoo()
    off_diagonal = counts.row != counts.col
    rows, cols, values = (
        counts.row[off_diagonal],
        counts.col[off_diagonal],
        counts.data[off_diagonal],
    )
    if threshold == "mean":
        cut = values.sum() / max(num_categories, 1) ** 2
    else:
        cut = float(threshold)
    keep = (values >= cut) & (values > 0)
    return _graph(rows[keep].astype(np.int64), cols[keep].astype(np.int64), num_categories)
