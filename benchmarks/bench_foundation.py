"""Speed and memory of the foundation (data -> windows -> task -> trainer): prints, asserts nothing.

Measures, for the neural baseline ``stid`` (its default config, batch 64, the `Trainer` of
``stgraph fit``):

* seconds of each of two training epochs (the training pass alone; the trainer's own
  ``epoch_seconds``, which adds the validation pass, is printed too), seconds of one pass over
  the test split, and peak RSS, on ``los-loop`` (real data, 207 nodes x 2,016 steps) and on a
  simulated series of PEMS-BAY's size (325 nodes x 52,116 five-minute steps, ~36k training
  windows);
* the peak RSS of the data and its windows alone at PEMS-BAY scale (`ForecastTask` plus one pass
  over every training batch, no model), against the raw float32 array (``T*N*F*4`` bytes) plus
  the interpreter+torch baseline measured right after the imports. The target is
  ``peak < baseline + 1.5 * raw``; the script prints ``(peak - baseline) / raw``.

Every scenario runs in a fresh subprocess (the script calls itself with ``--scenario NAME``), so
that its peak RSS (``ru_maxrss``) is its own. The simulated series is generated once, in its own
subprocess, and cached as ``.npy`` files in a temporary folder, so the simulator's working memory
is not counted against the windows.

Usage: ``.venv/bin/python benchmarks/bench_foundation.py [--quick] [--data ../shared/data]``.
``--quick`` limits the PEMS-BAY-scale epochs (and their validation/test passes) to
``--limit-batches`` batches (default 40) and says so in the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stgraph.data.adapters.base import RawDataset
from stgraph.data.cards import DatasetCard
from stgraph.data.config import DataConfig
from stgraph.data.series import Series
from stgraph.data.views import SeriesTrainView
from stgraph.data.windows import split_samples
from stgraph.graphs.recipes import build_graph
from stgraph.models.base import build_model, count_parameters
from stgraph.pipeline import FitConfig, prepare
from stgraph.tasks.forecast import ForecastTask
from stgraph.training.config import TrainConfig
from stgraph.training.trainer import Trainer

# Measured before any data is loaded: the interpreter, numpy, pandas, torch and stgraph.
BASELINE_KB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PEMS_BAY_NODES, PEMS_BAY_STEPS, PEMS_BAY_DAYS = 325, 52_116, 181  # 181 days = 52,128 steps
WINDOW = HORIZON = 12
BATCH = 64
MARKER = "BENCH_JSON "
MB = 1024 * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------- the simulated series
def scenario_simulate(args: argparse.Namespace) -> dict:
    """Simulate PEMS-BAY's size once and cache it (values, mask, adjacency) as .npy files."""
    from stgraph.data.simulator import simulate_traffic

    started = time.perf_counter()
    raw = simulate_traffic(num_nodes=PEMS_BAY_NODES, days=PEMS_BAY_DAYS)
    series = raw.series.slice_steps(0, PEMS_BAY_STEPS)
    cache = Path(args.cache)
    np.save(cache / "values.npy", np.ascontiguousarray(series.values))
    np.save(cache / "mask.npy", np.ascontiguousarray(series.mask))
    np.save(cache / "adjacency.npy", raw.adjacency)
    (cache / "meta.json").write_text(
        json.dumps({"start": str(series.timestamps[0]), "node_ids": list(series.node_ids)})
    )
    return {"seconds": time.perf_counter() - started, "shape": list(series.values.shape)}


def load_simulated(cache: Path) -> RawDataset:
    """The cached PEMS-BAY-scale series (np.load reads straight into the arrays, no copy)."""
    import pandas as pd

    meta = json.loads((cache / "meta.json").read_text())
    values = np.load(cache / "values.npy")
    mask = np.load(cache / "mask.npy")
    timestamps = pd.date_range(meta["start"], periods=len(values), freq="5min")
    series = Series(
        values=values,
        mask=mask,
        timestamps=timestamps,
        node_ids=tuple(meta["node_ids"]),
        channels=("speed",),
        name="sim-pems-bay-scale",
    )
    card = DatasetCard(
        name=series.name,
        format="simulator",
        files=(),
        frequency="5min",
        target="speed",
        graph={"method": "adjacency"},
    )
    return RawDataset(series=series, card=card, adjacency=np.load(cache / "adjacency.npy"))


def simulated_task(cache: Path) -> ForecastTask:
    raw = load_simulated(cache)
    splits = split_samples(raw.series.timestamps, WINDOW, HORIZON)  # ratio 0.7 / 0.1 / 0.2
    graph = build_graph(raw, raw.card.graph, SeriesTrainView.of(raw.series, splits.train_steps))
    return ForecastTask(raw.series, graph, splits, WINDOW, HORIZON)


# ---------------------------------------------------------------------------- scenarios
def warm_up_windows() -> None:
    """Build a task on a tiny simulated series and gather one batch."""
    from stgraph.data.simulator import simulate_traffic

    raw = simulate_traffic(num_nodes=8, days=2)
    splits = split_samples(raw.series.timestamps, WINDOW, HORIZON)
    graph = build_graph(raw, raw.card.graph, SeriesTrainView.of(raw.series, splits.train_steps))
    task = ForecastTask(raw.series, graph, splits, WINDOW, HORIZON)
    next(task.batches("train", BATCH, shuffle=True))


def scenario_windows(args: argparse.Namespace) -> dict:
    """Data + windows alone: load the series, make the task, gather every training batch once."""
    # The baseline is the interpreter and torch after a tiny end-to-end warm-up: torch, pandas
    # and scipy allocate their runtimes (thread pools, caches) on first use, not on import.
    warm_up_windows()
    baseline = current_rss_bytes()
    started = time.perf_counter()
    task = simulated_task(Path(args.cache))
    after_task = current_rss_bytes()
    peak_after_task = peak_rss_bytes()  # includes StandardScaler.fit's float64 temporaries
    checksum, count = 0.0, 0
    for batch in task.batches("train", BATCH, shuffle=True, seed=0, epoch=1):
        checksum += float(batch.inputs.x.sum())  # touch the batch so that the gather is really done
        count += 1
    seconds = time.perf_counter() - started
    t, n, f = task.series.values.shape
    raw_bytes = t * n * f * 4
    peak = peak_rss_bytes()
    windows = len(task.splits.train)
    return {
        "nodes": n,
        "steps": t,
        "channels": f,
        "train_windows": windows,
        "batches": count,
        "seconds": seconds,
        "baseline": baseline,
        "after_task": after_task,
        "peak_after_task": peak_after_task,
        "peak": peak,
        "raw_bytes": raw_bytes,
        "ratio": (peak - baseline) / raw_bytes,
        "copied_windows_bytes": windows * (WINDOW + HORIZON) * n * f * 4,
    }


def scenario_train(args: argparse.Namespace) -> dict:
    """Two epochs of stid with the trainer of ``stgraph fit``, then one pass over the test split."""
    limit = args.limit_batches if args.quick and args.scenario == "train-sim" else None
    train = TrainConfig(epochs=2, batch_size=BATCH, patience=None, limit_batches=limit)
    if args.scenario == "train-los-loop":
        data = DataConfig(dataset="los-loop", data_dir=str(Path(args.data) / "traffic/los-loop"))
        task = prepare(FitConfig(data=data, train=train))  # task.params: window 12, horizon 12
    else:
        task = simulated_task(Path(args.cache))
    torch.manual_seed(train.seed)
    model = build_model("stid", {}, task.context)
    train_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="stgraph-bench-") as run_dir:
        trainer = Trainer(task, model, train, Path(run_dir), quiet=True)
        original = trainer._train_epoch

        def timed_train_epoch(epoch: int) -> float:  # the training pass alone, without validation
            started = time.perf_counter()
            loss = original(epoch)
            train_seconds.append(time.perf_counter() - started)
            return loss

        trainer._train_epoch = timed_train_epoch
        result = trainer.fit()
        started = time.perf_counter()
        test = trainer.evaluate("test")
        test_seconds = time.perf_counter() - started
    total = task.num_batches("train", BATCH)
    eval_total = task.num_batches("test", trainer.eval_batch_size)
    series = task.series
    return {
        "nodes": series.num_nodes,
        "steps": series.num_steps,
        "train_windows": len(task.splits.train),
        "test_windows": len(task.splits.test),
        "parameters": count_parameters(model),
        "device": str(trainer.device),
        "batches": min(total, limit) if limit else total,
        "batches_total": total,
        "test_batches": min(eval_total, limit) if limit else eval_total,
        "test_batches_total": eval_total,
        "limited": limit is not None,
        "train_seconds": train_seconds,
        "epoch_seconds": [h["epoch_seconds"] for h in result.history],
        "test_seconds": test_seconds,
        f"test_mae_avg{HORIZON}": test[f"mae_avg{HORIZON}"],
        "baseline": BASELINE_KB * 1024,
        "peak": peak_rss_bytes(),
    }


SCENARIOS = {
    "simulate": scenario_simulate,
    "windows": scenario_windows,
    "train-los-loop": scenario_train,
    "train-sim": scenario_train,
}


# ---------------------------------------------------------------------------- driver
def run_child(name: str, args: argparse.Namespace) -> dict | None:
    """Run one scenario in a fresh interpreter; its last ``BENCH_JSON`` line is the result."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--scenario",
        name,
        "--data",
        str(args.data),
        "--cache",
        str(args.cache),
        "--limit-batches",
        str(args.limit_batches),
    ]
    if args.quick:
        command.append("--quick")
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        print(f"  scenario {name} failed (exit {done.returncode})", flush=True)
        return None
    return json.loads(lines[-1][len(MARKER) :])


def header(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    cpus = os.cpu_count()
    print(f"stgraph foundation benchmark  {dt.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}".rstrip()
        + f", {cpus} CPUs (affinity {len(os.sched_getaffinity(0))}), torch {torch.__version__}"
        f", torch threads {torch.get_num_threads()}, python {platform.python_version()}"
        f", cuda {'yes' if torch.cuda.is_available() else 'no'}"
    )
    shared = "  (high: machine shared with other jobs)" if load[0] > 0.75 * (cpus or 1) else ""
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{shared}")
    mode = f"--quick (PEMS-BAY-scale epochs limited to {args.limit_batches} batches)"
    print(
        f"mode: {mode if args.quick else 'full'}; model stid (default config), batch {BATCH}, "
        f"window {WINDOW} -> horizon {HORIZON}; one fresh subprocess per scenario"
    )
    print(flush=True)


def train_row(label: str, r: dict) -> str:
    ep = r["train_seconds"] + [float("nan")] * (2 - len(r["train_seconds"]))
    batches = f"{r['batches']}/{r['batches_total']}" + ("*" if r["limited"] else "")
    tests = f"{r['test_batches']}/{r['test_batches_total']}" + ("*" if r["limited"] else "")
    return (
        f"{label:<26}{r['nodes']:>6}{r['steps']:>8}{r['train_windows']:>8}{batches:>10}"
        f"{ep[0]:>9.2f}{ep[1]:>9.2f}{sum(ep) / 2:>9.2f}"
        f"{' / '.join(f'{s:.2f}' for s in r['epoch_seconds']):>15}"
        f"{tests:>9}{r['test_seconds']:>8.2f}{r['peak'] / MB:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="limit the PEMS-BAY-scale epochs to --limit-batches batches",
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding traffic/")
    parser.add_argument("--limit-batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.scenario:  # child: one scenario, one JSON line
        print(MARKER + json.dumps(SCENARIOS[args.scenario](args)), flush=True)
        return

    header(args)
    args.cache = tempfile.mkdtemp(prefix="stgraph-bench-")
    try:
        los_loop = Path(args.data) / "traffic" / "los-loop"
        results = {}
        if (los_loop / "los_speed.csv").is_file():
            results["train-los-loop"] = run_child("train-los-loop", args)
        else:
            print(f"  los-loop skipped: no {los_loop / 'los_speed.csv'}")
        simulated = run_child("simulate", args)
        if simulated:
            print(
                f"simulated {simulated['shape']} (T, N, F) in {simulated['seconds']:.1f}s "
                "(cached as .npy; not part of any figure below)\n"
            )
            results["windows"] = run_child("windows", args)
            results["train-sim"] = run_child("train-sim", args)
    finally:
        shutil.rmtree(args.cache, ignore_errors=True)

    print("1. stid training: seconds per epoch (training pass), test pass, peak RSS")
    print(
        f"{'dataset':<26}{'nodes':>6}{'steps':>8}{'train':>8}{'batches':>10}"
        f"{'epoch1 s':>9}{'epoch2 s':>9}{'mean s':>9}{'+val s (1/2)':>15}"
        f"{'test b.':>9}{'test s':>8}{'peak MB':>10}"
    )
    labels = {"train-los-loop": "los-loop (real)", "train-sim": "simulated PEMS-BAY scale"}
    for key, label in labels.items():
        if results.get(key):
            print(train_row(label, results[key]))
    limited = [r for r in results.values() if r and r.get("limited")]
    if limited:
        r = limited[0]
        full = r["batches_total"] / r["batches"] * sum(r["train_seconds"]) / 2
        print(
            f"* --quick: limited to {r['batches']} of {r['batches_total']} training batches "
            f"(and {r['test_batches']} of {r['test_batches_total']} validation/test batches); "
            f"a full epoch extrapolates to ~{full:.0f}s"
        )
    device = next((r["device"] for r in results.values() if r and "device" in r), "cpu")
    print(
        f"device {device}; 'train' = training windows; '+val s' = the trainer's epoch_seconds "
        "(training + validation pass); test pass at eval batch 128"
    )
    print()

    w = results.get("windows")
    if w:
        print(
            "2. data + windows alone at PEMS-BAY scale (ForecastTask + every training batch "
            "once, no model)"
        )
        print(
            f"  series [T, N, F]           {w['steps']} x {w['nodes']} x {w['channels']}; "
            f"{w['train_windows']} training windows in {w['batches']} batches of {BATCH}, "
            f"gathered in {w['seconds']:.1f}s"
        )
        print(f"  raw float32 array          {w['raw_bytes'] / MB:8.1f} MB  (T*N*F*4)")
        print(f"  baseline RSS (after imports){w['baseline'] / MB:7.1f} MB")
        print(
            f"  RSS after building the task{w['after_task'] / MB:8.1f} MB  "
            "(values + bool mask + calendar)"
        )
        print(
            f"  peak RSS once task built   {w['peak_after_task'] / MB:8.1f} MB  "
            "(before any batch: the scaler fit's temporaries)"
        )
        print(f"  peak RSS                   {w['peak'] / MB:8.1f} MB")
        limit = w["baseline"] + 1.5 * w["raw_bytes"]
        verdict = "meets" if w["peak"] < limit else "MISSES"
        print(
            f"  (peak - baseline) / raw    {w['ratio']:8.2f}    target < 1.50: {verdict} "
            f"(limit {limit / MB:.1f} MB)"
        )
        print(
            f"  for scale: copying every training window would take "
            f"{w['copied_windows_bytes'] / MB:.0f} MB "
            f"({w['copied_windows_bytes'] / w['raw_bytes']:.1f}x raw)"
        )


if __name__ == "__main__":
    main()
