"""Speed of the mobility graph builders and of one HGARN training step on CPU: prints figures,
asserts nothing.

Graphs (`stgraph.graphs.mobility`):
- ``radius_graph`` at HGARN's 0.1 km on the 5,135 Foursquare NYC POIs of
  ``../shared/data/mobility/foursquare-nyc-stan`` (random points in a NYC-sized box when that
  folder is absent), on 5,000 and 50,000 random points, and a vectorised all-pairs haversine
  at 5,000 points for comparison (the official code loops over all pairs in Python);
- ``membership_graph`` and ``cooccurrence_graph`` on the 147,938 NYC check-ins (users, POIs and
  hours from the file; a random category per POI among 300, since the file has none).

Models (skipped with ``--skip-models``): seconds of one forward + backward pass of ``hgarn``
(official widths: LSTMs of 600), ``hgarn-faithful`` and ``gru`` on a packed batch of NYC scale
(64 user rows of 137 check-ins, 8 samples per row; 5,135 locations, 300 categories), and of the
three GATs alone.

Usage: ``.venv/bin/python benchmarks/bench_mobility_graphs.py [--threads 2] [--skip-models]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stgraph.graphs.mobility import (
    cooccurrence_graph,
    haversine_km,
    membership_graph,
    radius_graph,
)

NYC = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobility" / "foursquare-nyc-stan"
NUM_CATEGORIES = 300


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    """Smallest wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def random_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points in a 40 x 50 km box around New York."""
    return np.column_stack([40.55 + 0.36 * rng.random(n), -74.25 + 0.6 * rng.random(n)])


def load_nyc(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    if NYC.is_dir():
        poi = np.load(NYC / "NYC_POI.npy")
        rows = np.load(NYC / "NYC.npy").astype(np.int64)
        coords = poi[np.argsort(poi[:, 0]), 1:]
        location = rows[:, 1] - 1
        user, minute = rows[:, 0] - 1, rows[:, 2]
        source = f"NYC ({len(coords):,} POIs, {len(rows):,} check-ins)"
    else:
        coords = random_points(5135, rng)
        location = rng.integers(0, 5135, 147_938)
        user, minute = rng.integers(0, 1083, 147_938), rng.integers(0, 10**6, 147_938)
        source = "random stand-in for NYC (data folder absent)"
    per_location = rng.integers(0, NUM_CATEGORIES, len(coords))
    columns = {
        "user": user,
        "location": location,
        "category": per_location[location],
        "hour": (minute % 1440) // 60,
    }
    return coords, columns, source


def bench_graphs(rng: np.random.Generator) -> None:
    coords, cols, source = load_nyc(rng)
    print(f"data: {source}")
    seconds, graph = best_of(lambda: radius_graph(coords, 0.1))
    print(
        f"radius_graph 0.1 km, {len(coords):,} POIs: {seconds * 1e3:.1f} ms, "
        f"{graph.num_edges:,} edges"
    )
    for n in (5_000, 50_000):
        points = random_points(n, rng)
        seconds, graph = best_of(lambda p=points: radius_graph(p, 0.1))
        print(
            f"radius_graph 0.1 km, {n:,} random points: {seconds * 1e3:.1f} ms, "
            f"{graph.num_edges:,} edges"
        )
    points = random_points(5_000, rng)
    seconds, _ = best_of(lambda: haversine_km(points[:, None], points[None, :]) < 0.1, repeats=1)
    print(f"all-pairs numpy haversine, 5,000 points (for comparison): {seconds * 1e3:.0f} ms")
    seconds, (graph, _) = best_of(
        lambda: membership_graph(cols["location"], cols["category"], len(coords), NUM_CATEGORIES)
    )
    print(f"membership_graph, {len(cols['location']):,} check-ins: {seconds * 1e3:.1f} ms")
    seconds, graph = best_of(
        lambda: cooccurrence_graph(cols["user"], cols["category"], cols["hour"], NUM_CATEGORIES)
    )
    print(
        f"cooccurrence_graph, {len(cols['user']):,} check-ins, {NUM_CATEGORIES} categories: "
        f"{seconds * 1e3:.1f} ms, {graph.num_edges:,} edges"
    )


def bench_models(rng: np.random.Generator) -> None:
    from stgraph.models import build_model
    from stgraph.tasks.next_location.batch import MobilityContext, NextLocationInputs

    coords, cols, _ = load_nyc(rng)
    num_locations, num_users = len(coords), int(cols["user"].max()) + 1
    member, location_category = membership_graph(
        cols["location"], cols["category"], num_locations, NUM_CATEGORIES
    )
    context = MobilityContext(
        num_users=num_users,
        num_locations=num_locations,
        num_categories=NUM_CATEGORIES,
        location_graphs={
            "location": radius_graph(coords, 0.1),
            "location_category": member,
            "category": cooccurrence_graph(
                cols["user"], cols["category"], cols["hour"], NUM_CATEGORIES
            ),
        },
        location_category=torch.from_numpy(location_category),
    )
    rows, width, per_row = 64, 137, 8
    location = torch.from_numpy(rng.integers(0, num_locations, (rows, width)))
    inputs = NextLocationInputs(
        location=location,
        category=torch.from_numpy(location_category)[location].clamp_min(0),
        hour=torch.from_numpy(rng.integers(0, 24, (rows, width))),
        weekday=torch.from_numpy(rng.integers(0, 7, (rows, width))),
        gap_hours=torch.ones(rows, width),
        user=torch.arange(rows),
        lengths=torch.full((rows,), width),
        query_row=torch.arange(rows).repeat_interleave(per_row),
        query_pos=torch.linspace(10, width - 1, per_row).long().repeat(rows),
    )
    target = torch.from_numpy(rng.integers(0, num_locations, rows * per_row))
    print(f"one training step, {rows} rows x {width} check-ins, {rows * per_row} samples:")
    for name in ("hgarn", "hgarn-faithful", "gru"):
        model = build_model(name, {}, context).train()

        def step(model=model) -> None:
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs).location, target)
            loss.backward()

        seconds, _ = best_of(step, repeats=2)
        params = sum(p.numel() for p in model.parameters())
        print(f"  {name}: {seconds:.2f} s forward + backward ({params / 1e6:.1f} M parameters)")
        if name == "hgarn":
            with torch.no_grad():
                seconds, _ = best_of(model.graph_features)
            print(f"  hgarn's three GATs alone (forward, whole vocabulary): {seconds * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    bench_graphs(rng)
    if not args.skip_models:
        bench_models(rng)


if __name__ == "__main__":
    main()
