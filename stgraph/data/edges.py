"""Edge tables: rows ``(from, to[, weight])`` naming node ids, parsed into plain numpy arrays.

This is the data layer's reader of edge lists (PEMS0X.csv, DCRNN's distances_bay_2017.csv...).
It depends on numpy, pandas and `stgraph.errors` only. The graph layer sits above and builds on
it (its ``from_edge_list`` wraps these arrays in a `Graph`), never the other way round.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from stgraph.errors import InputError

DUPLICATE_RULES = ("first", "last", "min", "max", "mean", "error")
UNKNOWN_RULES = ("error", "drop")


class EdgeArrays(NamedTuple):
    """Edges ``src[k] -> dst[k]`` of weight ``weight[k]``, sorted by (src, dst), no repeats.

    Attributes:
        src: ``[E]`` int64 source node indices.
        dst: ``[E]`` int64 target node indices.
        weight: ``[E]`` float32 weights (float32, as `Graph` stores them).
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


def _id_strings(values: np.ndarray | pd.Series) -> np.ndarray:
    """Ids as strings, with integral floats written without '.0' (CSV readers make 4.0 of 4)."""
    col = pd.Series(np.asarray(values))
    if pd.api.types.is_float_dtype(col) and np.isfinite(col).all() and (col % 1 == 0).all():
        col = col.astype(np.int64)
    return col.astype(str).str.strip().to_numpy()


def _resolve_duplicates(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int, rule: str
) -> EdgeArrays:
    """One edge per (src, dst) pair, sorted by (src, dst), repeats resolved by ``rule``.

    ``"first"``/``"last"`` keep the weight of the earliest/latest row of a pair; ``"min"``,
    ``"max"`` and ``"mean"`` reduce all its weights. Weights stay in ``weight``'s dtype.
    """
    key = src * n + dst
    if rule in ("min", "max", "mean"):
        pairs, group = np.unique(key, return_inverse=True)
        if rule == "min":
            out = np.full(len(pairs), np.inf, dtype=weight.dtype)
            np.minimum.at(out, group, weight)
        elif rule == "max":
            out = np.full(len(pairs), -np.inf, dtype=weight.dtype)
            np.maximum.at(out, group, weight)
        else:
            out = np.zeros(len(pairs), dtype=weight.dtype)
            np.add.at(out, group, weight)
            out /= np.bincount(group, minlength=len(pairs))
        return EdgeArrays(pairs // n, pairs % n, out)
    # "first" scans the rows in order, anything else ("last"; "error" has no repeats left) from
    # the end; np.unique's return_index then points at the first row met, keys come sorted.
    order = np.arange(len(key)) if rule == "first" else np.arange(len(key))[::-1]
    _, pos = np.unique(key[order], return_index=True)
    chosen = order[pos]
    return EdgeArrays(src[chosen], dst[chosen], weight[chosen])


def parse_edge_list(
    edges: pd.DataFrame | np.ndarray,
    node_ids: list | tuple | np.ndarray,
    duplicates: Literal["first", "last", "min", "max", "mean", "error"] = "first",
    symmetric: bool = False,
    unknown: Literal["error", "drop"] = "error",
    what: str = "edge list",
) -> EdgeArrays:
    """The edges of rows ``(from, to[, weight])`` whose ends are node ids, as numpy arrays.

    Columns are taken by position (the header names vary: ``cost``, ``distance``...); without a
    third column every weight is 1. Ids are compared as strings, so ``400001`` in a CSV matches
    the node id ``"400001"``. Every row becomes an edge, zero weights included (a zero distance
    is real).

    Args:
        edges: a DataFrame or ``[E, 2|3]`` array.
        node_ids: the node order; ``node_ids[i]`` is node i.
        duplicates: for a (from, to) pair listed more than once, keep the ``"first"`` or
            ``"last"`` row (DCRNN's loop keeps the last), the ``"min"``/``"max"``/``"mean"``
            weight, or raise (``"error"``).
        symmetric: also add j -> i for each i -> j; where the file lists both directions the
            listed one wins, except for ``"min"``/``"max"``/``"mean"`` which combine both (the
            mean of the two directions, each first resolved on its own).
        unknown: rows naming an id outside ``node_ids`` raise (``"error"``) or are skipped
            (``"drop"``, DCRNN's rule for a distance file covering more sensors than the graph).
        what: how to name the input in error messages (e.g. its file name).

    Returns:
        ``(src, dst, weight)``: int64 node indices and float32 weights, sorted by (src, dst),
        one entry per pair.

    Raises:
        InputError: bad shape, unknown ids, duplicate node ids, non-numeric or NaN weights, or
            duplicate pairs under ``duplicates="error"``.
    """
    if duplicates not in DUPLICATE_RULES:
        raise InputError(f"duplicates must be one of {DUPLICATE_RULES}, got '{duplicates}'.")
    if unknown not in UNKNOWN_RULES:
        raise InputError(f"unknown must be 'error' or 'drop', got '{unknown}'.")
    frame = pd.DataFrame(edges) if not isinstance(edges, pd.DataFrame) else edges
    if frame.ndim != 2 or frame.shape[1] not in (2, 3):
        raise InputError(
            f"{what}: expected 2 or 3 columns (from, to[, weight]), got shape {frame.shape}."
        )
    ids = _id_strings(np.asarray(node_ids, dtype=object))
    lookup = {node: i for i, node in enumerate(ids)}
    if len(lookup) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(f"{what}: node id '{dup}' appears more than once in node_ids.")
    n = len(ids)
    ends = []
    for col in range(2):
        names = _id_strings(frame.iloc[:, col].to_numpy())
        ends.append(pd.Series(names).map(lookup).to_numpy(dtype=np.float64))
    missing = np.isnan(ends[0]) | np.isnan(ends[1])
    if missing.any() and unknown == "error":
        row = int(np.argmax(missing))
        bad = frame.iloc[row, 0] if np.isnan(ends[0][row]) else frame.iloc[row, 1]
        raise InputError(
            f"{what}: row {row} names node id '{bad}', which is not among the {n} node ids "
            f"({int(missing.sum())} row(s) affected). Pass unknown='drop' to skip such rows."
        )
    if frame.shape[1] == 3:
        weights = pd.to_numeric(frame.iloc[:, 2], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(weights[~missing]).any():
            row = int(np.argmax(np.isnan(weights) & ~missing))
            raise InputError(f"{what}: row {row} has a missing or non-numeric weight.")
    else:
        weights = np.ones(len(frame))
    keep = ~missing
    src = ends[0][keep].astype(np.int64)
    dst = ends[1][keep].astype(np.int64)
    weight = weights[keep]
    if duplicates == "error":
        pairs, counts = np.unique(src * n + dst, return_counts=True)
        if (counts > 1).any():
            at = int(np.argmax(counts > 1))
            pair = int(pairs[at])
            raise InputError(
                f"{what}: pair ({ids[pair // n]}, {ids[pair % n]}) is listed "
                f"{int(counts[at])} times; choose duplicates='first', 'min', 'max' or 'mean'."
            )
    out = _resolve_duplicates(src, dst, weight, n, duplicates)
    if symmetric:
        # The listed edges go first, so "first" lets a listed direction beat a mirrored one.
        rule = duplicates if duplicates in ("min", "max", "mean") else "first"
        out = _resolve_duplicates(
            np.concatenate([out.src, out.dst]),
            np.concatenate([out.dst, out.src]),
            np.concatenate([out.weight, out.weight]),
            n,
            rule,
        )
    # float64 up to here (a mean is rounded once); float32 out, as `Graph` stores weights.
    return EdgeArrays(out.src, out.dst, out.weight.astype(np.float32))


def edge_distance_matrix(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, num_nodes: int, fill: float = np.inf
) -> np.ndarray:
    """The ``[N, N]`` float64 matrix with ``weight[k]`` at ``(src[k], dst[k])``, ``fill`` elsewhere.

    Unlike a dense adjacency (0 for no edge) this keeps a zero-weight edge apart from a missing
    one, which a distance matrix needs: ``edge_distance_matrix(*parse_edge_list(rows, ids),
    len(ids))`` is the road-distance matrix of an edge list.
    """
    out = np.full((num_nodes, num_nodes), fill, dtype=np.float64)
    out[np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)] = np.asarray(
        weight, dtype=np.float64
    )
    return out
