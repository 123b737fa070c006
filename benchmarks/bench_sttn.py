"""Speed and memory of STTN on CPU: prints a table, asserts nothing.

Measures, for ``sttn`` (embed 64, 3 layers, 2 heads, batch 64, micro-batches of 2, dropout 0 as in
``pipelines/los-loop.yaml``), the same with the TF release's dropout 0.1, and ``sttn-faithful``
(its preset: batch 50 in micro-batches of 10):
parameter count, seconds per training epoch on los-loop (207 nodes, 1,395 training windows
12 -> 12; the real data when ``../shared/data/traffic/los-loop`` is present, random data of that
shape otherwise), one pass over the test split, peak RSS, FLOPs of a training step and the
achieved GFLOP/s against a 2048x2048 fp32 matmul; inference latency (batch 1) and throughput
(batch 64) at PEMS-BAY scale (325 nodes); neighbourhood-restricted spatial attention at 2,000 and
8,000 simulated nodes (training step and inference at batch 1).

Every scenario runs in its own fresh process, so each peak RSS is that scenario's alone
(interpreter, torch and stgraph imports included; the imports alone are reported first).

Usage: ``.venv/bin/python benchmarks/bench_sttn.py [--quick] [--threads 2] [--checkpoint]
[--large 2000,8000]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils.flop_counter import FlopCounterMode

from stgraph.graphs.graph import Graph
from stgraph.models import build_model
from stgraph.models.base import count_parameters
from stgraph.nn import graph_conv
from stgraph.tasks.base import Batch, Loss
from stgraph.tasks.forecast import (
    ForecastBatch,
    ForecastContext,
    ForecastInputs,
    ForecastTargets,
)

LOS_LOOP = Path(__file__).resolve().parents[2] / "shared" / "data" / "traffic" / "los-loop"
STTN = {"embed_dim": 64, "num_layers": 3, "num_heads": 2}
# (label, model, params, batch size, micro-batch size): the los-loop pipeline (dropout 0, as in
# LibCity's STTN), the same with the TF release's dropout 0.1, and the faithful preset.
VARIANTS = (
    ("sttn", "sttn", STTN, 64, 2),
    ("sttn dropout 0.1", "sttn", {**STTN, "dropout": 0.1}, 64, 2),
    ("sttn-faithful", "sttn-faithful", {}, 50, 10),
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def random_graph(n: int, degree: int = 8, seed: int = 0) -> Graph:
    """A road-like graph: each node linked to ``degree`` nodes close in index (a banded graph)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(degree)
    offsets = torch.randint(1, 20, (n * degree,), generator=g)
    dst = (src + offsets) % n
    index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    weight = torch.rand(index.shape[1], generator=g) * 0.5 + 0.5
    return Graph(index, weight, n)


def random_batch(b: int, n: int, w: int = 12, h: int = 12) -> ForecastBatch:
    return Batch(
        ForecastInputs(
            x=torch.randn(b, w, n, 1),
            x_mask=torch.ones(b, w, n, 1, dtype=torch.bool),
            x_tod=torch.rand(b, w),
            x_dow=torch.randint(0, 7, (b, w)),
            y_tod=torch.rand(b, h),
            y_dow=torch.randint(0, 7, (b, h)),
            anchor=torch.arange(b),
        ),
        ForecastTargets(
            y=torch.randn(b, h, n, 1),
            y_mask=torch.ones(b, h, n, 1, dtype=torch.bool),
        ),
    )


class RandomTask:
    """The los-loop shapes with random values (used when the real data is absent)."""

    def __init__(self, n: int = 207, train: int = 1395, test: int = 399) -> None:
        self.n, self.sizes = n, {"train": train, "test": test}

    def batches(self, split: str, batch_size: int, shuffle: bool = False, limit=None):
        total = self.sizes[split]
        for number, start in enumerate(range(0, total, batch_size)):
            if limit is not None and number >= limit:
                return
            yield random_batch(min(batch_size, total - start), self.n)

    def loss(self, output: torch.Tensor, batch: ForecastBatch) -> Loss:
        error = (output - batch.targets.y[:, : output.shape[1]]).abs()
        return Loss(error.sum(), torch.tensor(error.numel()))


def los_loop_task():
    """(task, graph, source): the real los-loop when available, random data otherwise."""
    try:
        from stgraph.data.sources import open_dataset
        from stgraph.data.windows import split_samples
        from stgraph.tasks.forecast import ForecastTask

        raw = open_dataset("los-loop", data_dir=LOS_LOOP)
        graph = Graph.from_dense(raw.adjacency)
        splits = split_samples(raw.series.timestamps, 12, 12)
        return ForecastTask(raw.series, graph, splits), graph, "real los-loop"
    except Exception as exc:  # the data pipeline may be absent: fall back to random data
        print(f"(los-loop unavailable: {exc!r}; using random data of its shape)")
        return RandomTask(), random_graph(207), "random, los-loop shape"


def train_epoch(model, task, batch_size: int, micro: int, limit: int | None):
    """One epoch as the trainer runs it: Adam, micro-batch gradients summed, clipping at 5."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    steps = 0
    start = time.perf_counter()
    for batch in task.batches("train", batch_size, shuffle=True, limit=limit):
        optimiser.zero_grad(set_to_none=True)
        for part in batch.split(micro):
            output = model(part.inputs)
            loss = task.loss(output, part).mean() * (len(part) / len(batch))
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        steps += 1
    return time.perf_counter() - start, steps


@torch.no_grad()
def test_pass(model, task, batch_size: int, limit: int | None) -> float:
    model.eval()
    start = time.perf_counter()
    for batch in task.batches("test", batch_size, limit=limit):
        model(batch.inputs)
    return time.perf_counter() - start


def training_step_flops(model, batch, micro: int) -> float:
    """FLOPs of one training step (forward and backward of every micro-batch).

    `FlopCounterMode` would count a sparse operator product as a dense one of the same shape;
    those products run outside the counter here and count as ``2 nnz C`` each.
    """
    product = graph_conv._SparseProduct
    forward, backward = product.forward, product.backward
    sparse = [0]

    def counted_forward(ctx, z, matrix, transposed):
        sparse[0] += 2 * matrix.values().numel() * z.shape[-1]
        with _disable_current_modes():
            return forward(ctx, z, matrix, transposed)

    def counted_backward(ctx, grad):
        sparse[0] += 2 * ctx.transposed.values().numel() * grad.shape[-1]
        with _disable_current_modes():
            return backward(ctx, grad)

    product.forward, product.backward = counted_forward, counted_backward
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            for part in batch.split(micro):
                model(part.inputs).abs().mean().backward()
    finally:
        product.forward, product.backward = forward, backward
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops() + sparse[0])


# ---------------------------------------------------------------- scenarios (one process each)


def _setup(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def scenario_imports(threads: int, quick: bool, peak: float, extra: dict) -> list:
    _setup(threads)
    return [("process after imports: peak RSS (MB)", f"{peak_rss_mb():.0f}")]


def scenario_train(threads: int, quick: bool, peak: float, extra: dict) -> list:
    _setup(threads)
    label, name, params, batch_size, micro = extra["variant"]
    params = {**params, **extra.get("override", {})}
    limit = 3 if quick else None
    task, graph, source = los_loop_task()
    ctx = ForecastContext(207, 1, 1, 12, 12, 288, graph)
    model = build_model(name, params, ctx)
    rows = [(f"{label}: los-loop data", source)]
    rows.append((f"{label}: parameters", f"{count_parameters(model):,}"))
    seconds, steps = train_epoch(model, task, batch_size, micro, limit)
    train_peak = peak_rss_mb()
    test_seconds = test_pass(model, task, 8, limit)
    # Counted last: the pass under FlopCounterMode peaks ~270 MB above a plain epoch (measured),
    # so it must not set the training peak.
    flops = training_step_flops(model, random_batch(batch_size, 207), micro)
    per_step = seconds / steps
    full_steps = -(-1395 // batch_size)
    span = f"s/epoch ({full_steps} batches of {batch_size}, micro {micro})"
    span += " est. from 3 batches" if quick else ""
    rows.append((f"{label}: train {span}", f"{per_step * full_steps:.1f}"))
    rows.append((f"{label}: GFLOP per training step", f"{flops / 1e9:.1f}"))
    achieved = flops / per_step / 1e9
    rows.append(
        (f"{label}: achieved GFLOP/s (share of matmul)", f"{achieved:.1f} ({achieved / peak:.0%})")
    )
    rows.append((f"{label}: test pass s (batch 8)", f"{test_seconds:.1f}"))
    rows.append((f"{label}: peak RSS of the process over the epoch (MB)", f"{train_peak:.0f}"))
    return rows


def scenario_bay(threads: int, quick: bool, peak: float, extra: dict) -> list:
    _setup(threads)
    _, name, params = extra["variant"][:3]
    bay = ForecastContext(325, 1, 1, 12, 12, 288, random_graph(325))
    model = build_model(name, params, bay).eval()
    with torch.no_grad():
        one = random_batch(1, 325).inputs
        model(one)
        latency = min(_timed(lambda: model(one)) for _ in range(5))
        big = random_batch(64, 325).inputs
        model(big)
        seconds = min(_timed(lambda: model(big)) for _ in range(2))
    return [
        (f"{name} @325 nodes: latency batch 1, 12 steps (ms)", f"{latency * 1e3:.1f}"),
        (f"{name} @325 nodes: throughput batch 64 (windows/s)", f"{64 / seconds:.1f}"),
        (f"{name} @325 nodes: peak RSS (MB)", f"{peak_rss_mb():.0f}"),
    ]


def scenario_large(threads: int, quick: bool, peak: float, extra: dict) -> list:
    _setup(threads)
    n = extra["nodes"]
    ctx_n = ForecastContext(n, 1, 1, 12, 12, 288, random_graph(n))
    params = {**STTN, "spatial_neighbours": 32, "spatial_encoding": "learnable"}
    model = build_model("sttn", params, ctx_n)
    one = random_batch(1, n).inputs
    model.train()
    step = min(_timed(lambda: model(one).abs().mean().backward()) for _ in range(2))
    model.eval()
    with torch.no_grad():
        infer = min(_timed(lambda: model(one)) for _ in range(2))
    return [
        (f"sttn k=32 @{n} nodes: train step batch 1 (s)", f"{step:.2f}"),
        (f"sttn k=32 @{n} nodes: inference batch 1 (s)", f"{infer:.2f}"),
        (f"sttn k=32 @{n} nodes: peak RSS (MB)", f"{peak_rss_mb():.0f}"),
    ]


def _child(fn, args, queue) -> None:
    queue.put(fn(*args))


def run_isolated(fn, *args) -> list:
    """``fn(*args)`` in a fresh process (its own peak RSS); returns its rows."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(fn, args, queue))
    process.start()
    rows = queue.get()
    process.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 training batches, small graphs")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--checkpoint", action="store_true", help="sttn with checkpoint=True")
    parser.add_argument(
        "--large", default=None, help="node counts of the sparse-attention runs (2000,8000)"
    )
    args = parser.parse_args()
    large = args.large or ("2000" if args.quick else "2000,8000")
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str]] = []

    def show(new_rows) -> None:
        for name, value in new_rows:
            rows.append((name, value))
            print(f"{name:<62} {value}", flush=True)

    peak = matmul_gflops()
    show([("machine fp32 matmul 2048^2 (GFLOP/s)", f"{peak:.1f}")])
    show([("load average at start", f"{os.getloadavg()[0]:.2f}")])
    common = (args.threads, args.quick, peak)
    show(run_isolated(scenario_imports, *common, {}))
    override = {"checkpoint": True} if args.checkpoint else {}
    for variant in VARIANTS:
        extra = {"variant": variant, "override": override if variant[1] == "sttn" else {}}
        show(run_isolated(scenario_train, *common, extra))
    for variant in (VARIANTS[0], VARIANTS[2]):
        show(run_isolated(scenario_bay, *common, {"variant": variant}))
    for n in (int(value) for value in large.split(",")):
        show(run_isolated(scenario_large, *common, {"nodes": n}))
    show([("load average at end", f"{os.getloadavg()[0]:.2f}")])

    print("\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
