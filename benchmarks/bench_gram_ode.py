"""GRAM-ODE / STGODE speed and memory. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_gram_ode.py [--batches 2] [--nodes 170 307 883]
        [--data ../shared/data] [--skip-train] [--threads N]

Scenarios (each in a fresh subprocess, so its peak RSS is its own):
1. ``train``: one optimizer step (forward, backward, AdamW) at a time on ``--batches`` batches of
   64 windows of los-loop size (207 nodes; the real los-loop series when ``--data`` has it, else
   random inputs), official widths (16.9M parameters). Seconds per batch, extrapolated seconds
   per epoch (1,395 training windows = 22 batches), peak RSS, parameters, GFLOP per step
   (``FlopCounterMode``) and achieved GFLOP/s against a measured 2048^3 matmul, and the
   epoch time those matmul FLOPs alone would take at that rate (the floor for these widths).
   Then the same for simulated graphs of ``--nodes`` nodes (random inputs, random sparse graph).
2. ``dtw``: the DTW matrix of 883 random daily profiles (288 points, band radius 6).
3. ``edge``: GRAM-ODE's edge ODE alone, dense ``[B, N, N, T]`` state vs the exact factorized
   form, time and peak RSS.

The machine is shared: the header prints the load average; timings under load are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

WINDOWS_LOS_LOOP = 1395


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _matmul_gflops(dtype: str = "float32") -> float:
    import torch

    a = torch.randn(2048, 2048, dtype=getattr(torch, dtype))
    a @ a
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    return 3 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def _random_batch(x, index: int):
    """A `ForecastBatch` of random inputs ``x`` [B, W, N, F] with consecutive 5-minute steps
    (calendar fields and anchors are what the models' readouts and priors look at)."""
    import torch

    from stgraph.tasks.base import Batch
    from stgraph.tasks.forecast import ForecastInputs, ForecastTargets

    b, w, n, f = x.shape
    anchor = torch.arange(b) + index * b + w
    steps = anchor[:, None] + torch.arange(-w + 1, 13)  # inputs then 12 targets
    tod = (steps % 288).float() / 288
    dow = (steps // 288) % 7
    y = torch.randn(b, 12, n, f)
    return Batch(
        ForecastInputs(
            x,
            torch.ones_like(x, dtype=torch.bool),
            tod[:, :w],
            dow[:, :w],
            tod[:, w:],
            dow[:, w:],
            anchor,
        ),
        ForecastTargets(y, torch.ones_like(y, dtype=torch.bool)),
    )


def _context(num_nodes: int, in_channels: int = 1, graph=None):
    import torch

    from stgraph.graphs.graph import Graph
    from stgraph.tasks.forecast import ForecastContext

    if graph is None:
        generator = torch.Generator().manual_seed(0)
        adj = (torch.rand(num_nodes, num_nodes, generator=generator) < 3 / num_nodes).float()
        graph = Graph.from_dense(((adj + adj.T) > 0).float())
    return ForecastContext(num_nodes, in_channels, 1, 12, 12, 288, graph)


def scenario_train(args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import stgraph.models  # noqa: F401  (registers the models)
    from stgraph.models.base import build_model, count_parameters

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    n = args.num_nodes
    source = "random"
    x = torch.randn(args.batch_size, 12, n, 1)
    context = _context(n)
    task = None
    if args.real and n == 207:
        try:
            from stgraph.data.sources import open_dataset
            from stgraph.data.windows import split_samples
            from stgraph.tasks.forecast import ForecastTask

            raw = open_dataset("los-loop", data_dir=os.path.join(args.data, "traffic", "los-loop"))
            splits = split_samples(raw.series.timestamps, 12, 12, ratios=[0.7, 0.1, 0.2])
            from stgraph.graphs.graph import Graph

            graph = Graph.from_dense(raw.adjacency)
            task = ForecastTask(raw.series, graph, splits)
            context = _context(n, graph=graph)
            source = f"los-loop ({len(splits.train)} training windows)"
        except Exception as exc:  # the benchmark still runs on random inputs
            source = f"random (los-loop unavailable: {type(exc).__name__})"
    params = {"checkpoint": args.checkpoint}
    model = build_model(args.model, params, context)
    if task is not None:
        start = time.perf_counter()
        model.fit_train(task.train_view)
        fit_s = time.perf_counter() - start
    else:
        fit_s = None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)

    batches = []
    for index in range(args.batches):
        if task is not None:
            anchors = task.splits.train[index * args.batch_size : (index + 1) * args.batch_size]
            batches.append(task.batch(anchors))
        else:
            batches.append(_random_batch(x, index))
    # FLOPs of one step, counted on a 2-window batch without checkpointing (FlopCounterMode
    # under checkpointing kept every activation alive: 17 GB at batch 64) and scaled to the
    # batch; checkpointing recomputes each block's forward once more on top of this.
    counted = build_model(
        args.model, {"checkpoint": False} if args.model != "stgode" else {}, context
    )
    counted.load_state_dict(model.state_dict())
    small = batches[0].split(2)[0]
    counter = FlopCounterMode(display=False)
    with counter:
        counted(small.inputs).abs().mean().backward()
    flops = counter.get_total_flops() * args.batch_size / 2
    del counted
    times = []
    micro = args.micro or args.batch_size
    for batch in batches:
        start = time.perf_counter()
        # As the trainer runs micro-batches: gradients of the parts add up to the batch's.
        for part in batch.split(micro):
            (model(part.inputs).abs().mean() * (len(part) / args.batch_size)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    per_batch = min(times[1:]) if len(times) > 1 else times[0]
    num_batches = -(-WINDOWS_LOS_LOOP // args.batch_size)
    peak = _matmul_gflops()
    return {
        "model": args.model,
        "nodes": n,
        "source": source,
        "params": count_parameters(model),
        "micro_batch": micro,
        "checkpoint": args.checkpoint,
        "batch_times_s": [round(t, 2) for t in times],
        "s_per_batch": round(per_batch, 2),
        "s_per_epoch_1395_windows": round(per_batch * num_batches, 1),
        "peak_rss_gb": round(_rss_gb(), 2),
        "gflop_per_step": round(flops / 1e9, 1) if flops else None,
        "achieved_gflops": round(flops / 1e9 / per_batch, 1) if flops else None,
        "matmul_gflops": round(peak, 1),
        # The step's matmul FLOPs alone at the 2048^3 matmul rate: no schedule of these
        # operations on this machine trains an epoch faster.
        "floor_s_per_epoch": round(flops / 1e9 / peak * num_batches, 1) if flops else None,
        "dtw_fit_s": round(fit_s, 2) if fit_s is not None else None,
    }


def scenario_dtw(args: argparse.Namespace) -> dict:
    from stgraph.graphs.ode_graphs import time_pairwise_dtw

    seconds = time_pairwise_dtw(args.num_nodes, 288, 6)
    return {
        "dtw_nodes": args.num_nodes,
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(_rss_gb(), 2),
    }


def scenario_edge(args: argparse.Namespace) -> dict:
    import torch

    from stgraph.nn.ode import GramODEModule, stgode_operator

    torch.manual_seed(0)
    n, b = args.num_nodes, args.batch_size
    module = GramODEModule(n, 64, 12, edge_mode=args.edge_mode)
    h = torch.randn(b, n, 12, 64, requires_grad=True)
    op = stgode_operator((torch.rand(n, n) < 3 / n).float())
    start = time.perf_counter()
    module.edge_features(h, op + module.mask).sum().backward()
    return {
        "edge_mode": args.edge_mode,
        "nodes": n,
        "batch": b,
        "seconds_fwd_bwd": round(time.perf_counter() - start, 3),
        "peak_rss_gb": round(_rss_gb(), 2),
    }


def _child(scenario: str, extra: list[str], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--scenario", scenario, "--data", args.data, *extra]
    if args.threads:
        command += ["--threads", str(args.threads)]
    command += ["--micro", str(args.micro)]
    command += ["--checkpoint" if args.checkpoint else "--no-checkpoint"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"scenario": scenario, "args": extra, "error": done.stderr.strip()[-400:]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=None)
    parser.add_argument("--model", default="gram-ode")
    parser.add_argument("--num-nodes", type=int, default=207)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--nodes", type=int, nargs="*", default=[170, 307, 883])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--edge-mode", default="factorized")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--micro", type=int, default=0, help="micro-batch size (0: whole batch)")
    parser.add_argument(
        "--checkpoint",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="recompute each block in backward (less memory, about 1/3 more compute)",
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--real", action="store_true", default=True)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.scenario:
        result = {"train": scenario_train, "dtw": scenario_dtw, "edge": scenario_edge}[
            args.scenario
        ](args)
        print(json.dumps(result), flush=True)
        return

    import torch

    print(
        f"cpus {os.cpu_count()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()}"
    )
    # bf16 pays only where the CPU has a fast path for it (AMX); printed to show whether it does.
    print(
        f"matmul 2048^3: {_matmul_gflops():.1f} GFLOP/s fp32, "
        f"{_matmul_gflops('bfloat16'):.1f} GFLOP/s bf16"
    )
    rows = [_child("dtw", ["--num-nodes", "883"], args)]
    for n, b in ((207, 64), (883, 8)):
        for mode in ("dense", "factorized"):
            rows.append(
                _child(
                    "edge",
                    ["--num-nodes", str(n), "--batch-size", str(b), "--edge-mode", mode],
                    args,
                )
            )
    if not args.skip_train:
        for model in ("gram-ode", "stgode"):
            rows.append(_child("train", ["--model", model, "--batches", str(args.batches)], args))
        for n in args.nodes:
            rows.append(
                _child("train", ["--num-nodes", str(n), "--batches", str(args.batches)], args)
            )
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
