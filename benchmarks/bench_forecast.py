"""End-to-end forecast latency: one ``stgraph forecast`` call (process start, model resolution,
reading the input, forecasting, atomic write and the MLflow run all included) and one request to
``mlflow models serve``, for the simulator model (64 nodes) and a 325-node graph.

Each model is a 1-epoch STID fitted first in a throw-away MLflow store and promoted to ``@prod``;
the calls use ``models:/NAME@prod``, as a scheduled job does (the alias is looked up every call).
The first call (model download into the empty local cache, new experiment) is reported apart; the
median, min and max are over ``--repeats`` calls after it.

``--baseline DIR`` times another checkout of stgraph (e.g. a ``git worktree`` of an older commit;
its ``stgraph`` package is put first on ``PYTHONPATH``) on the same models and inputs, its calls
interleaved with this checkout's (A B A B ...) so that a change of machine load hits both alike.
Prints figures; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_forecast.py [--repeats 7] [--no-serve] [--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parents[1]  # this checkout: its stgraph is the one timed


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def _wide(raw, missing: float) -> pd.DataFrame:
    """The series as a wide table, ``missing`` where a reading is absent (the card's rule)."""
    series = raw.series
    values = np.where(series.mask[:, :, 0], series.values[:, :, 0], missing)
    frame = pd.DataFrame(values, columns=list(series.node_ids))
    frame.insert(0, "timestamp", series.timestamps)
    return frame


def _fit(name: str, data: str, env: dict[str, str], folder: Path) -> None:
    _run(
        [str(BIN / "stgraph"), "fit", data, "--model", "stid", "--epochs", "1",
         "--quiet", "--register", name, "--set", "task.params.plot_nodes=0", "--json"],
        env,
    )  # fmt: skip
    _run([str(BIN / "stgraph"), "models", "promote", name, "1", "prod"], env)


def _forecast_once(name: str, recent: Path, env: dict[str, str], out: Path) -> float:
    """Wall seconds of one ``stgraph forecast`` process, from its start to its exit. Run as
    ``python -m stgraph`` so that each checkout's own entry point is the one timed."""
    started = time.perf_counter()
    _run(
        [sys.executable, "-m", "stgraph", "forecast", f"models:/{name}@prod", "--input",
         str(recent), "--output", str(out)],
        env,
    )  # fmt: skip
    return time.perf_counter() - started


def _cli_latency(
    name: str, recent: Path, envs: dict[str, dict[str, str]], repeats: int
) -> dict[str, tuple[float, list[float]]]:
    """Per checkout: the first call's seconds, and those of ``repeats`` calls after it; the
    checkouts take turns call by call."""
    first = {label: _forecast_once(name, recent, env, recent.parent / f"{name}-{label}-first.pq")
             for label, env in envs.items()}  # fmt: skip
    times: dict[str, list[float]] = {label: [] for label in envs}
    for i in range(repeats):
        for label, env in envs.items():
            out = recent.parent / f"{name}-{label}-{i}.parquet"
            times[label].append(_forecast_once(name, recent, env, out))
    return {label: (first[label], times[label]) for label in envs}


def _serve_latency(name: str, recent: pd.DataFrame, env: dict[str, str], repeats: int):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@prod", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit("model server did not start") from None
                time.sleep(0.3)
        startup = time.perf_counter() - started
        rows = [[t.isoformat(), *(None if v != v else v for v in r)] for t, *r in recent.values]
        body = json.dumps({"dataframe_split": {"columns": list(recent.columns), "data": rows}})
        times = []
        for _ in range(repeats + 1):  # the first request warms the worker up
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            began = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
            times.append(time.perf_counter() - began)
        return startup, times[0], times[1:]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _code_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with ``root``'s stgraph package first on the import path."""
    paths = [str(root), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-serve", action="store_true", help="skip the model-server figures")
    parser.add_argument(
        "--baseline", type=Path, help="another stgraph checkout, timed interleaved with this one"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from stgraph.data.simulator import simulate_traffic
    from stgraph.data.sources import open_dataset

    with tempfile.TemporaryDirectory(prefix="bench-forecast-") as tmp:
        folder = Path(tmp)
        env = dict(os.environ)
        env.update(
            STGRAPH_HOME=str(folder / "home"),
            MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env = _code_env(env, HERE)
        envs = {"this": env}
        if args.baseline:
            base = {**env, "STGRAPH_HOME": str(folder / "home-baseline")}  # its own model cache
            envs["baseline"] = _code_env(base, args.baseline.resolve())
        os.chdir(folder)  # MLflow artifacts go to ./mlruns of a new experiment
        cases = []
        sim = _wide(open_dataset("simulator"), 0.0)  # card: 0 = missing
        cases.append(("bench-simulator", "simulator", sim))
        big = _wide(simulate_traffic(num_nodes=325, days=4, seed=1), np.nan)  # file: NaN
        big_csv = folder / "sim325.csv"
        big.to_csv(big_csv, index=False)
        cases.append(("bench-325", str(big_csv), big))
        print(f"{'model':<16} {'nodes':>5} {'code':<8} {'fit s':>6} {'cli 1st s':>9} "
              f"{'cli median s':>12} {'cli min s':>9} {'cli max s':>9} {'serve start s':>13} "
              f"{'1st req s':>9} {'req median ms':>13}")  # fmt: skip
        for name, data, frame in cases:
            began = time.perf_counter()
            _fit(name, data, env, folder)
            fit_s = time.perf_counter() - began
            recent = frame.tail(288)  # the last day: what a client keeps
            recent_path = folder / f"{name}-recent.parquet"
            recent.to_parquet(recent_path, index=False)
            cli = _cli_latency(name, recent_path, envs, args.repeats)
            serve = "" if args.no_serve else _serve_figures(name, recent, env, args.repeats)
            for label, (first, times) in cli.items():
                print(
                    f"{name:<16} {frame.shape[1] - 1:>5} {label:<8} {fit_s:>6.1f} {first:>9.2f} "
                    f"{statistics.median(times):>12.2f} {min(times):>9.2f} {max(times):>9.2f} "
                    + (serve if label == "this" else ""),
                    flush=True,
                )


def _serve_figures(name: str, recent: pd.DataFrame, env: dict[str, str], repeats: int) -> str:
    startup, first, served = _serve_latency(name, recent.tail(48), env, repeats)
    return f"{startup:>13.1f} {first:>9.3f} {1000 * statistics.median(served):>13.1f}"


if __name__ == "__main__":
    main()
