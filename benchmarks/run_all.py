"""Every benchmark's quick scenario, one after another: ``make bench``. Prints figures; asserts
nothing about time.

    .venv/bin/python benchmarks/run_all.py [--data ../shared/data] [--only NAME ...] [--list]

Each script runs as its own subprocess (this checkout first on ``PYTHONPATH``), with small sizes
and few steps, so the whole run takes a few minutes on two cores. Their output streams through
as they print it; a summary (exit status and seconds of each) ends the run. A benchmark that
needs a dataset folder under ``--data`` is skipped, with a note, when it is absent. The figures are
smoke numbers: for the ones worth quoting, run a script alone on an idle machine without the
quick options (see ``benchmarks/README.md``).

Exit status: 1 if any benchmark failed or timed out, else 0 (skips do not count).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Bench:
    name: str
    argv: str  # after the interpreter, split at spaces; "{data}" is replaced by --data
    what: str
    needs: str | None = None  # a folder under --data; skipped with a note without it


BENCHES = (
    Bench(
        "foundation",
        "bench_foundation.py --quick --limit-batches 5 --threads 2 --data {data}",
        "stid epochs (the PEMS-BAY-scale ones limited to 5 batches), data+windows memory; "
        "the script skips its los-loop row without the data",
    ),
    Bench(
        "sttn",
        "run_all.py --sttn-light",
        "STTN without its training epochs: PEMS-BAY-scale inference, 2,000-node sparse "
        "attention (bench_sttn.py --quick trains 3 variants: ~20 min on 2 busy cores)",
    ),
    Bench(
        "gram-ode",
        "bench_gram_ode.py --skip-train --threads 2 --data {data}",
        "GRAM-ODE: the DTW matrix, edge ODE dense vs factorized (--skip-train: a training "
        "step at official widths takes minutes)",
    ),
    Bench(
        "forecast",
        "bench_forecast.py --repeats 1",
        "stgraph forecast and mlflow models serve latency (1-epoch stid, 64 and 325 nodes)",
    ),
    Bench(
        "prior-blend",
        "prior_blend.py --data {data}",
        "gram-ode's seasonal prior blended with persistence on los-loop",
        needs="traffic/los-loop",
    ),
    Bench(
        "contention",
        "bench_contention.py --steps 1 --repeats 1 --policies stgraph --micro auto",
        "sttn steps on los-loop alone and beside a CPU-bound neighbour: the slowdown factor",
        needs="traffic/los-loop",
    ),
    Bench(
        "mobility-graphs",
        "bench_mobility_graphs.py --threads 2",
        "radius, membership and co-occurrence graphs; one hgarn/gru training step at NYC scale",
    ),
    Bench(
        "hgarn",
        "bench_hgarn.py --epochs 1 --models hgarn",
        "hgarn seconds per epoch and peak RSS on foursquare-nyc-trajgan",
        needs="mobility/foursquare-nyc-trajgan",
    ),
)


def sttn_light() -> None:
    """bench_sttn.py's scenarios less the training epochs, each in its own process as there."""
    sys.path.insert(0, str(HERE))
    import bench_sttn as b  # imports torch and stgraph: only in this child

    b.torch.set_num_threads(2)
    peak = b.matmul_gflops()
    print(f"{'machine fp32 matmul 2048^2 (GFLOP/s)':<62} {peak:.1f}", flush=True)
    scenarios = (
        (b.scenario_imports, {}),
        (b.scenario_bay, {"variant": b.VARIANTS[0]}),
        (b.scenario_large, {"nodes": 2000}),
    )
    for scenario, extra in scenarios:
        for name, value in b.run_isolated(scenario, 2, True, peak, extra):
            print(f"{name:<62} {value}", flush=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # each line shows as the script prints it
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the benchmark's process group (its own children too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return


def run(bench: Bench, data: Path, timeout: float) -> tuple[str, float]:
    """Runs one benchmark with its output streaming through; returns (status, seconds)."""
    if bench.needs and not (data / bench.needs).is_dir():
        print(f"skipped: {bench.name} needs {data / bench.needs}, which is absent")
        return "skipped (no data)", 0.0
    script, *args = (a.replace("{data}", str(data)) for a in bench.argv.split())
    command = [sys.executable, str(HERE / script), *args]
    print(f"$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    # Its own session, so that a timeout or Ctrl-C also ends the processes it started.
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        return f"timed out after {timeout:.0f}s", time.perf_counter() - started
    except KeyboardInterrupt:
        _stop(process)
        raise
    seconds = time.perf_counter() - started
    return ("ok" if code == 0 else f"failed (exit {code})"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding traffic/")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], metavar="NAME")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and exit")
    parser.add_argument("--sttn-light", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sttn_light:
        sttn_light()
        return 0
    if args.list:
        for bench in BENCHES:
            print(f"{bench.name:<12} {bench.argv}\n{'':<13}{bench.what}")
        return 0

    data = Path(args.data).resolve()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"stgraph quick benchmarks: {os.cpu_count()} CPUs, load average {load}, data {data}")
    print("(smoke figures: quick sizes, and a shared machine makes every time pessimistic)")
    results = []
    began = time.perf_counter()
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        print(f"\n=== {bench.name}: {bench.what}", flush=True)
        status, seconds = run(bench, data, args.timeout)
        results.append((bench, status, seconds))

    print(f"\n=== summary ({time.perf_counter() - began:.0f}s in all)")
    for bench, status, seconds in results:
        print(f"{bench.name:<12} {bench.argv.split()[0]:<20} {status:<22} {seconds:7.1f}s")
    failed = [b for b, status, _ in results if not status.startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
