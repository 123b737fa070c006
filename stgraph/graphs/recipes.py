"""Graph recipes: how a dataset's graph is built, named in its card (``graph: {method: ...}``).

A recipe is a function ``(raw, train, **params) -> Graph`` registered in `GRAPH_RECIPES`.
Recipes that learn the graph from the data (``correlation-knn``) read only the first
``train.series`` (the `SeriesTrainView`), so the graph never sees validation or test data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from stgraph.errors import InputError
from stgraph.graphs.builders import (
    _gaussian_knn,
    from_adjacency,
    gaussian_kernel,
    knn_graph,
    stgcn_kernel,
)
from stgraph.graphs.graph import Graph
from stgraph.registry import Registry

if TYPE_CHECKING:  # a runtime import would tie stgraph.graphs to every adapter module
    from stgraph.data.adapters.base import RawDataset
    from stgraph.data.views import SeriesTrainView

GraphRecipe = Callable[..., Graph]
# Recipes of other modules (the STGODE/GRAM-ODE graphs) register on the first look-up.
GRAPH_RECIPES: Registry[GraphRecipe] = Registry(
    "graph recipe", packages=("stgraph.graphs.ode_graphs",)
)


def _name(raw: RawDataset) -> str:
    return raw.card.name or raw.series.name


def _usable_methods(raw: RawDataset) -> list[str]:
    """The recipes this dataset has the inputs for, to suggest in error messages."""
    methods = []
    if raw.adjacency is not None:
        methods.append("adjacency")
    if raw.distances is not None:
        methods += ["gaussian-kernel", "stgcn-kernel"]
    if raw.series.coords is not None:
        methods.append("knn")
    return [*methods, "correlation-knn", "none"]


def _require(raw: RawDataset, what: str, value: object, method: str) -> None:
    if value is None:
        usable = " or ".join(f"'{m}'" for m in _usable_methods(raw))
        raise InputError(
            f"Graph method '{method}' needs {what}, which dataset '{_name(raw)}' does not "
            f"have; use method {usable}."
        )


def _check_nodes(raw: RawDataset, matrix: np.ndarray, what: str) -> None:
    n = raw.series.num_nodes
    if np.shape(matrix) != (n, n):
        raise InputError(
            f"Dataset '{_name(raw)}': {what} has shape {np.shape(matrix)} but the series has "
            f"{n} nodes; expected ({n}, {n})."
        )


@GRAPH_RECIPES.register("none")
def _none(raw: RawDataset, train: SeriesTrainView) -> Graph:
    """No edges (for models that learn their graph or use none)."""
    empty = torch.zeros(2, 0, dtype=torch.long)
    return Graph(empty, torch.zeros(0), raw.series.num_nodes)


@GRAPH_RECIPES.register("adjacency")
def _adjacency(raw: RawDataset, train: SeriesTrainView) -> Graph:
    """The adjacency shipped with the dataset, as is."""
    _require(raw, "an adjacency matrix", raw.adjacency, "adjacency")
    _check_nodes(raw, raw.adjacency, "the adjacency")
    return from_adjacency(raw.adjacency, what=f"dataset '{_name(raw)}' adjacency")


@GRAPH_RECIPES.register("gaussian-kernel")
def _gaussian(
    raw: RawDataset,
    train: SeriesTrainView,
    sigma: float | None = None,
    threshold: float = 0.1,
    self_loops: bool = True,
) -> Graph:
    """DCRNN's thresholded Gaussian kernel of the road distances."""
    _require(raw, "distances", raw.distances, "gaussian-kernel")
    _check_nodes(raw, raw.distances, "the distance matrix")
    return gaussian_kernel(raw.distances, sigma=sigma, threshold=threshold, self_loops=self_loops)


@GRAPH_RECIPES.register("stgcn-kernel")
def _stgcn(
    raw: RawDataset,
    train: SeriesTrainView,
    scale: float = 1e4,
    sigma2: float = 0.1,
    epsilon: float = 0.5,
) -> Graph:
    """STGCN's Gaussian kernel of the distances."""
    _require(raw, "distances", raw.distances, "stgcn-kernel")
    _check_nodes(raw, raw.distances, "the distance matrix")
    return stgcn_kernel(raw.distances, scale=scale, sigma2=sigma2, epsilon=epsilon)


@GRAPH_RECIPES.register("knn")
def _knn(raw: RawDataset, train: SeriesTrainView, k: int, symmetric: bool = False) -> Graph:
    """k nearest nodes by great-circle distance between the nodes' (lat, lon)."""
    _require(raw, "coordinates", raw.series.coords, "knn")
    return knn_graph(raw.series.coords, k, metric="haversine", symmetric=symmetric)


def masked_correlation(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of ``values`` ``[T, N]``, pairwise-complete.

    Each pair uses only the steps where both nodes are observed. A pair with fewer than two such
    steps, or a constant series over them, gets NaN.
    """
    m = mask.astype(np.float64)
    x = np.where(mask, values, 0.0).astype(np.float64)
    # Centre on each node's own mean first: the sums below then stay small and accurate.
    count = m.sum(0)
    x = np.where(mask, x - x.sum(0) / np.maximum(count, 1), 0.0)
    n = m.T @ m
    sx = x.T @ m  # sx[i, j]: sum of x_i over steps where j is observed too
    sxx = (x * x).T @ m
    sxy = x.T @ x
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sx.T / n
        var_i = sxx - sx * sx / n
        corr = cov / np.sqrt(var_i * var_i.T)
    corr[(n < 2) | ~np.isfinite(corr)] = np.nan
    return np.clip(corr, -1.0, 1.0)


@GRAPH_RECIPES.register("correlation-knn")
def _correlation_knn(
    raw: RawDataset, train: SeriesTrainView, k: int, channel: int = 0, symmetric: bool = False
) -> Graph:
    """Each node links to the k nodes whose training-period series correlate best with its own.

    The distance is ``sqrt(2 (1 - r))`` (the distance between the two z-scored series, up to a
    constant), weighted with the same Gaussian as `knn_graph`. Pairs without a defined
    correlation are never neighbours.
    """
    series = train.series
    if series.num_steps < 2:
        raise InputError(
            f"correlation-knn: the training part has {series.num_steps} step(s); it needs two."
        )
    if not 0 <= channel < series.num_channels:
        raise InputError(
            f"correlation-knn: channel {channel} out of range for {series.num_channels} channel(s)."
        )
    n = series.num_nodes
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise InputError(f"correlation-knn: k must be an integer in [1, {n - 1}], got {k}.")
    # Only the training slice: a data-driven graph must not look at validation or test steps.
    values = series.values[:, :, channel]
    mask = series.mask[:, :, channel]
    corr = masked_correlation(values, mask)
    dist = np.sqrt(2.0 * (1.0 - corr))
    dist[np.isnan(dist)] = np.inf
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    src = np.repeat(np.arange(n), k)
    dst = nearest.ravel()
    found = dist[src, dst]
    ok = np.isfinite(found)
    return _gaussian_knn(src[ok], dst[ok], found[ok], n, symmetric)


def build_graph(raw: RawDataset, recipe: dict, train: SeriesTrainView) -> Graph:
    """Build the graph a recipe names, e.g. ``{"method": "knn", "k": 8}``.

    Args:
        raw: the loaded dataset.
        recipe: ``method`` plus that method's parameters (the dict is not modified).
        train: the training steps; data-driven recipes read nothing else.

    Raises:
        InputError: no or unknown method, unknown or missing parameters, or an input the dataset
            lacks.
    """
    params = dict(recipe)
    if "method" not in params:
        raise InputError(
            f"Graph recipe {recipe} has no 'method'; known: {', '.join(GRAPH_RECIPES.names())}."
        )
    method = params.pop("method")
    func = GRAPH_RECIPES.get(method)
    accepted = list(inspect.signature(func).parameters.values())[2:]
    names = [p.name for p in accepted]
    unknown = sorted(set(params) - set(names))
    if unknown:
        allowed = ", ".join(names) or "none"
        raise InputError(
            f"Graph method '{method}' got unknown parameter(s) {unknown}; it accepts: {allowed}."
        )
    missing = [p.name for p in accepted if p.default is p.empty and p.name not in params]
    if missing:
        raise InputError(f"Graph method '{method}' needs parameter(s) {missing}.")
    graph = func(raw, train, **params)
    if graph.num_nodes != raw.series.num_nodes:
        raise InputError(
            f"Graph method '{method}' built {graph.num_nodes} nodes for dataset "
            f"'{_name(raw)}', whose series has {raw.series.num_nodes}."
        )
    return graph
