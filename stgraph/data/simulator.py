"""A deterministic traffic simulator: the embedded default dataset, so no file has to be fetched.

`simulate_traffic` lays out a freeway network over a city-sized disc (a few straight corridors, one
carriageway per direction, interchanges where corridors cross, turnarounds at their ends) and runs a
small macroscopic model of speed over it:

* each sensor has a free-flow speed and a rush-hour demand that follows a weekly profile (weekday
  morning and evening peaks with a tidal bias per direction, a flatter weekend midday bump);
* a congestion state per sensor relaxes towards its demand plus the congestion spilling back from
  its downstream neighbours a few steps earlier, so jams travel against the flow direction;
* random incidents hold a sensor's congestion high for 15-90 minutes and spread upstream;
* readings carry noise, and sensor dropouts are stored as 0 with ``mask`` False, as in METR-LA.

Everything is drawn from one ``np.random.default_rng(seed)``: the same arguments give byte-identical
arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from stgraph.data.adapters.base import ADAPTERS, RawDataset
from stgraph.data.cards import DatasetCard
from stgraph.data.series import Series
from stgraph.errors import InputError, did_you_mean

CITY_CENTER = (34.05, -118.25)  # (lat, lon): a Los Angeles-like basin
METRES_PER_DEG_LAT = 111_320.0
CITY_RADIUS_M = 8_000.0
NODES_PER_CORRIDOR = 16  # both directions together
MAINLINE, RAMP, TURNAROUND = 0, 1, 2
SPILL_SHARE = {MAINLINE: 1.0, RAMP: 0.35, TURNAROUND: 0.1}  # how much of a jam each link passes on
DISTANCE_CUTOFF_M = 10_000.0  # pairs further apart along the roads get distance inf
KERNEL_THRESHOLD = 0.1

# Congestion dynamics, in minutes so that they do not depend on the sampling interval.
RELAX_MINUTES = 30.0  # how fast congestion follows its drive
WAVE_METRES_PER_MINUTE = 70.0  # ~4 km/h: how fast the tail of a queue grows upstream
SPILL_THRESHOLD = 0.15  # only congestion above this spills back upstream
SPILL_GAIN = 1.0
SLOWDOWN = 0.8  # speed at full congestion is (1 - SLOWDOWN) of free flow


@dataclass(frozen=True)
class RoadNetwork:
    """Sensors and the directed road segments between them (traffic flows ``src -> dst``)."""

    xy: np.ndarray  # [N, 2] metres east/north of the city centre
    node_ids: tuple[str, ...]
    chain: np.ndarray  # [N] index of the carriageway (corridor * 2 + direction)
    src: np.ndarray  # [E]
    dst: np.ndarray  # [E]
    length: np.ndarray  # [E] road metres
    kind: np.ndarray  # [E] MAINLINE, RAMP or TURNAROUND

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    def coords(self) -> np.ndarray:
        """``[N, 2]`` (latitude, longitude) in degrees."""
        lat0, lon0 = CITY_CENTER
        lat = lat0 + self.xy[:, 1] / METRES_PER_DEG_LAT
        lon = lon0 + self.xy[:, 0] / (METRES_PER_DEG_LAT * np.cos(np.radians(lat0)))
        return np.stack([lat, lon], axis=1)


def _compass(direction: np.ndarray) -> str:
    east, north = direction
    if abs(east) >= abs(north):
        return "E" if east > 0 else "W"
    return "N" if north > 0 else "S"


def build_road_network(num_nodes: int, rng: np.random.Generator) -> RoadNetwork:
    """Corridors crossing a disc, one carriageway per direction, made strongly connected.

    Args:
        num_nodes: number of sensors (at least 4).
        rng: the random generator to draw the layout from.

    Returns:
        The sensors and directed road segments.
    """
    num_corridors = max(1, round(num_nodes / NODES_PER_CORRIDOR))
    counts = np.full(2 * num_corridors, num_nodes // (2 * num_corridors))
    counts[: num_nodes % (2 * num_corridors)] += 1

    xy, ids, chain_of, positions = [], [], [], []
    edges: dict[tuple[int, int], tuple[float, int]] = {}

    def add_edge(a: int, b: int, metres: float, kind: int) -> None:
        if a != b and ((a, b) not in edges or edges[(a, b)][0] > metres):
            edges[(a, b)] = (metres, kind)

    lines = []  # (origin, unit direction, half length) per corridor
    chains: list[list[int]] = []  # node indices in flow order per carriageway
    for k in range(num_corridors):
        # Spread the headings so that corridors cross instead of running side by side.
        angle = np.pi * k / num_corridors + rng.uniform(-0.25, 0.25)
        unit = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-unit[1], unit[0]])
        offset = rng.uniform(-0.4, 0.4) * CITY_RADIUS_M
        origin = offset * normal
        half = np.sqrt(CITY_RADIUS_M**2 - offset**2)
        lines.append((origin, unit, half))
        for sign in (1, -1):
            count = int(counts[len(chains)])
            spacing = 1.84 * half / max(count - 1, 1)
            s = np.linspace(-0.92 * half, 0.92 * half, count)
            s = s + rng.uniform(-0.3, 0.3, count) * spacing
            s = np.sort(s)[::sign]  # flow order
            winding = rng.uniform(1.02, 1.15)
            members = []
            for i, along in enumerate(s):
                node = len(xy)
                # Carriageways sit 15 m either side of the centre line.
                xy.append(origin + along * unit + sign * 15.0 * normal)
                ids.append(f"H{k + 1}{_compass(sign * unit)}{i:02d}")
                chain_of.append(len(chains))
                positions.append(along)
                members.append(node)
                if i > 0:
                    add_edge(node - 1, node, abs(along - s[i - 1]) * winding, MAINLINE)
            chains.append(members)
        plus, minus = chains[-2], chains[-1]
        xy_arr = np.asarray(xy)
        for a, b in ((plus[-1], minus[0]), (minus[-1], plus[0])):
            add_edge(a, b, float(np.linalg.norm(xy_arr[a] - xy_arr[b])) + 500.0, TURNAROUND)

    xy_arr = np.asarray(xy)
    pos = np.asarray(positions)
    # Interchanges: where two corridors cross inside the disc, ramps link every carriageway of one
    # (last sensor before the crossing) to every carriageway of the other (first sensor after it).
    for a in range(num_corridors):
        for b in range(a + 1, num_corridors):
            (oa, ua, ha), (ob, ub, hb) = lines[a], lines[b]
            det = ua[0] * -ub[1] - ua[1] * -ub[0]
            if abs(det) < 1e-6:
                continue
            rhs = ob - oa
            sa = (rhs[0] * -ub[1] - rhs[1] * -ub[0]) / det
            sb = (ua[0] * rhs[1] - ua[1] * rhs[0]) / det
            if abs(sa) > ha or abs(sb) > hb:
                continue
            cross = oa + sa * ua
            for from_corr, s_from, to_corr, s_to in ((a, sa, b, sb), (b, sb, a, sa)):
                for ci in (2 * from_corr, 2 * from_corr + 1):
                    sign_i = 1 if ci % 2 == 0 else -1
                    before = [n for n in chains[ci] if sign_i * pos[n] < sign_i * s_from]
                    if not before:
                        continue
                    for cj in (2 * to_corr, 2 * to_corr + 1):
                        sign_j = 1 if cj % 2 == 0 else -1
                        after = [n for n in chains[cj] if sign_j * pos[n] > sign_j * s_to]
                        if not after:
                            continue
                        i, j = before[-1], after[0]
                        metres = np.linalg.norm(xy_arr[i] - cross) + np.linalg.norm(
                            cross - xy_arr[j]
                        )
                        add_edge(i, j, float(metres) + 300.0, RAMP)

    # Corridors that meet nowhere get a two-way connector between their closest sensors.
    n = len(xy)
    while True:
        pairs = np.array(list(edges), dtype=np.int64)
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        count, labels = connected_components(graph, directed=True, connection="strong")
        if count == 1:
            break
        inside, outside = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
        gap = np.linalg.norm(xy_arr[inside, None] - xy_arr[None, outside], axis=-1)
        i, j = np.unravel_index(np.argmin(gap), gap.shape)
        metres = float(gap[i, j]) * 1.3 + 300.0
        add_edge(int(inside[i]), int(outside[j]), metres, RAMP)
        add_edge(int(outside[j]), int(inside[i]), metres, RAMP)

    keys = sorted(edges)
    return RoadNetwork(
        xy=xy_arr,
        node_ids=tuple(ids),
        chain=np.asarray(chain_of),
        src=np.array([k[0] for k in keys]),
        dst=np.array([k[1] for k in keys]),
        length=np.array([edges[k][0] for k in keys]),
        kind=np.array([edges[k][1] for k in keys]),
    )


def road_distances(network: RoadNetwork, cutoff: float = DISTANCE_CUTOFF_M) -> np.ndarray:
    """``[N, N]`` shortest road distance ``i -> j`` in metres, inf beyond ``cutoff``, 0 diagonal.

    Like the distance table shipped with METR-LA, it lists nearby pairs along the roads rather than
    only directly linked ones, so that the Gaussian kernel's spread is set by a neighbourhood.
    """
    n = network.num_nodes
    graph = coo_matrix((network.length, (network.src, network.dst)), shape=(n, n)).tocsr()
    return dijkstra(graph, directed=True, limit=cutoff)


def gaussian_kernel(distances: np.ndarray, threshold: float = KERNEL_THRESHOLD) -> np.ndarray:
    """DCRNN's adjacency: ``exp(-(d / std)^2)``, std over the finite distances, weak ones cut."""
    finite = np.isfinite(distances)
    std = distances[finite].std()
    weights = np.zeros_like(distances)
    weights[finite] = np.exp(-((distances[finite] / std) ** 2))
    weights[weights < threshold] = 0.0
    return weights.astype(np.float32)


def _bump(hours: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((hours - centre) / width) ** 2)


def _demand(
    timestamps: pd.DatetimeIndex, network: RoadNetwork, rng: np.random.Generator, step_min: float
) -> np.ndarray:
    """``[T, N]`` congestion drive from commuting demand (weekly profile, noise included)."""
    n, t = network.num_nodes, len(timestamps)
    hours = np.asarray(timestamps.hour + timestamps.minute / 60.0, dtype=float)[:, None]
    weekday = np.asarray(timestamps.day_of_week < 5)[:, None]
    intensity = rng.uniform(0.15, 0.55, n)  # how badly each sensor's stretch jams at rush hour
    shift = rng.uniform(-0.35, 0.35, n)  # peak times differ by up to ~20 minutes
    # Tidal flow: per corridor one direction carries the morning peak, the other the evening one.
    tide = rng.uniform(0.55, 0.8, network.chain.max() + 1)
    morning_side = rng.integers(0, 2, (network.chain.max() + 2) // 2)
    inbound = (network.chain % 2) == morning_side[network.chain // 2]
    morning = np.where(inbound, 1.0, tide[network.chain])
    evening = np.where(inbound, tide[network.chain], 1.0)
    weekday_curve = morning * _bump(hours, 8.0 + shift, 1.0) + evening * _bump(
        hours, 17.5 + shift, 1.4
    )
    weekend_curve = 0.3 * _bump(hours, 13.5 + shift, 2.5)
    curve = np.where(weekday, weekday_curve, weekend_curve)

    # Day-to-day variation per sensor, and a slow AR(1) wobble within the day.
    days = np.asarray((timestamps.normalize() - timestamps[0].normalize()).days)
    daily = rng.lognormal(0.0, 0.15, (days.max() + 1, n))[days]
    phi = np.exp(-step_min / 60.0)
    shocks = rng.normal(0.0, 0.04 * np.sqrt(1 - phi**2), (t, n))
    wobble = np.empty((t, n))
    wobble[0] = shocks[0] / np.sqrt(1 - phi**2)
    for i in range(1, t):
        wobble[i] = phi * wobble[i - 1] + shocks[i]
    return np.clip(intensity * daily * curve + wobble + 0.02, 0.0, None)


def _incidents(
    t: int, n: int, rng: np.random.Generator, step_min: float, per_node_day: float
) -> tuple[np.ndarray, list[dict]]:
    """``[T, N]`` congestion floor from incidents, and their list (node, start, steps, severity)."""
    steps_per_day = 1440.0 / step_min
    count = rng.poisson(per_node_day * n * t / steps_per_day)
    nodes = rng.integers(0, n, count)
    starts = rng.integers(0, t, count)
    durations = np.maximum(1, np.round(rng.uniform(15, 90, count) / step_min)).astype(int)
    severity = rng.uniform(0.5, 0.9, count)
    floor = np.zeros((t, n))
    listing = []
    for node, start, steps, sev in zip(nodes, starts, durations, severity):
        stop = min(t, start + steps)
        floor[start:stop, node] = np.maximum(floor[start:stop, node], sev)
        listing.append(
            {"node": int(node), "start": int(start), "steps": int(stop - start), "severity": sev}
        )
    listing.sort(key=lambda item: (item["start"], item["node"]))
    for item in listing:
        item["severity"] = round(float(item["severity"]), 3)
    return floor, listing


def _dropouts(
    t: int, n: int, rng: np.random.Generator, step_min: float, runs_per_node_day: float
) -> np.ndarray:
    """``[T, N]`` observed-mask: short dropouts, a few sensors dead for hours, network outages."""
    mask = np.ones((t, n), dtype=bool)
    days = t * step_min / 1440.0
    runs = rng.poisson(runs_per_node_day * n * days)
    nodes = rng.integers(0, n, runs)
    starts = rng.integers(0, t, runs)
    lengths = rng.geometric(1 / 6, runs)  # mean 30 minutes at 5-minute steps
    for node, start, length in zip(nodes, starts, lengths):
        mask[start : start + length, node] = False
    for node in rng.choice(n, max(1, n // 16), replace=False):
        length = int(rng.uniform(4, 30) * 60 / step_min)
        start = int(rng.integers(0, max(1, t - length)))
        mask[start : start + length, node] = False
    for _ in range(max(1, round(days / 14))):
        length = int(rng.uniform(0.5, 2.5) * 60 / step_min)
        start = int(rng.integers(0, max(1, t - length)))
        mask[start : start + length] = False
    return mask


def simulate_traffic(
    num_nodes: int = 64,
    days: int = 28,
    freq_minutes: int = 5,
    seed: int = 0,
    start: str = "2024-01-01",
    incidents_per_node_day: float = 0.25,
    dropouts_per_node_day: float = 1.2,
    card: DatasetCard | None = None,
) -> RawDataset:
    """Simulates freeway speeds (mph) over a generated road network.

    Args:
        num_nodes: number of sensors (at least 4).
        days: length of the series in days.
        freq_minutes: sampling interval in minutes.
        seed: seed of the one random generator everything is drawn from.
        start: timestamp of the first step.
        incidents_per_node_day: expected incidents per sensor per day.
        dropouts_per_node_day: expected short dropout runs per sensor per day.
        card: the card to attach; a default one describing these arguments if None.

    Returns:
        ``RawDataset`` with channel ``speed`` (0 and mask False where a sensor dropped out), the
        sensors' (lat, lon), ``distances`` (shortest road metres, inf beyond 10 km) and
        ``adjacency`` (their Gaussian kernel). ``series.attrs["incidents"]`` lists the incidents.

    Raises:
        InputError: if an argument is out of range.
    """
    if num_nodes < 4:
        raise InputError(f"simulator: nodes must be at least 4, got {num_nodes}.")
    if days < 1 or freq_minutes < 1 or 1440 % freq_minutes:
        raise InputError(
            f"simulator: need days >= 1 and a frequency dividing a day, got days={days}, "
            f"freq_minutes={freq_minutes}."
        )
    if incidents_per_node_day < 0 or dropouts_per_node_day < 0:
        raise InputError("simulator: incident and dropout rates must be non-negative.")
    rng = np.random.default_rng(seed)
    step = float(freq_minutes)
    t = days * 1440 // freq_minutes
    timestamps = pd.date_range(pd.Timestamp(start), periods=t, freq=f"{freq_minutes}min")

    network = build_road_network(num_nodes, rng)
    n = network.num_nodes
    distances = road_distances(network)
    adjacency = gaussian_kernel(distances)

    demand = _demand(timestamps, network, rng, step)
    floor, incidents = _incidents(t, n, rng, step, incidents_per_node_day)
    free_flow = rng.uniform(55.0, 70.0, n)

    # A jam at dst reaches src after the time a backward wave needs to cover the segment.
    lag = np.clip(np.round(network.length / (WAVE_METRES_PER_MINUTE * step)), 1, None).astype(int)
    share = np.array([SPILL_SHARE[k] for k in network.kind])
    share = share / np.bincount(network.src, weights=share, minlength=n)[network.src]
    pad = int(lag.max())
    congestion = np.zeros((pad + t, n))
    rho = np.exp(-step / RELAX_MINUTES)
    state = np.zeros(n)
    src, dst = network.src, network.dst
    for i in range(t):
        downstream = congestion[pad + i - lag, dst]
        spill = np.bincount(
            src, weights=share * np.maximum(downstream - SPILL_THRESHOLD, 0.0), minlength=n
        )
        drive = np.minimum(demand[i] + SPILL_GAIN * spill, 1.0)
        state = np.maximum(rho * state + (1 - rho) * drive, floor[i])
        congestion[pad + i] = state

    speed = free_flow * (1.0 - SLOWDOWN * congestion[pad:])
    speed = speed + rng.normal(0.0, 1.2, speed.shape)
    speed = np.clip(speed, 3.0, 85.0)  # never 0: 0 means missing under null_value "zero"
    mask = _dropouts(t, n, rng, step, dropouts_per_node_day)
    values = np.where(mask, speed, 0.0).astype(np.float32)[:, :, None]

    if card is None:
        card = DatasetCard(
            name="simulator",
            format="simulator",
            files=(),
            frequency=f"{freq_minutes}min",
            target="speed",
            units="mph",
            null_value="zero",
            title="Simulated freeway speeds",
            license="generated",
            start=str(start),
            graph={"method": "adjacency"},
            options={"nodes": num_nodes, "days": days, "seed": seed},
        )
    series = Series(
        values=values,
        mask=mask[:, :, None],
        timestamps=timestamps,
        node_ids=network.node_ids,
        channels=("speed",),
        name=card.name,
        coords=network.coords(),
        attrs={"units": "mph", "source": "stgraph simulator", "seed": seed, "incidents": incidents},
    )
    return RawDataset(series=series, card=card, adjacency=adjacency, distances=distances)


# Card option -> simulate_traffic argument.
_OPTIONS = {
    "nodes": "num_nodes",
    "days": "days",
    "seed": "seed",
    "incidents_per_node_day": "incidents_per_node_day",
    "dropouts_per_node_day": "dropouts_per_node_day",
}


@ADAPTERS.register("simulator")
def load_simulator(card: DatasetCard, data_dir: Path) -> RawDataset:
    """Adapter for ``format: simulator``: generates the data from ``card.options`` (no files).

    Args:
        card: the card; ``options`` may set nodes, days, seed, incidents_per_node_day and
            dropouts_per_node_day, ``frequency`` the sampling interval and ``start`` the first day.
        data_dir: unused.

    Returns:
        The simulated dataset.

    Raises:
        InputError: on an unknown option or a frequency that is not a whole number of minutes.
    """
    del data_dir
    unknown = sorted(set(card.options) - set(_OPTIONS))
    if unknown:
        raise InputError(
            f"Card {card.path or card.name}: unknown simulator option(s) {unknown}."
            f"{did_you_mean(unknown[0], _OPTIONS)} Known: {', '.join(_OPTIONS)}."
        )
    try:
        minutes = pd.Timedelta(card.frequency) / pd.Timedelta(minutes=1)
    except ValueError:
        minutes = float("nan")
    if not float(minutes).is_integer() or minutes < 1:
        raise InputError(
            f"Card {card.path or card.name}: frequency '{card.frequency}' is not a whole number "
            "of minutes."
        )
    kwargs = {_OPTIONS[key]: value for key, value in card.options.items()}
    return simulate_traffic(
        freq_minutes=int(minutes), start=card.start or "2024-01-01", card=card, **kwargs
    )
