"""Run one ``stgraph fit`` in a fresh process and read its JSON summary, wall time and peak RSS
(shared by the model benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def probe_fit(arguments: list[str], folder: Path) -> tuple[dict, float, float]:
    """``stgraph fit <arguments> --json --quiet`` in a throw-away store under ``folder``: its
    summary, its wall seconds and its peak RSS in GB."""
    env = {
        **os.environ,
        "STGRAPH_HOME": str(folder / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
    }
    command = [sys.executable, "-m", "stgraph", "fit", *arguments, "--json", "--quiet"]
    began = time.perf_counter()
    # The fit in its own wrapper process, so that RUSAGE_CHILDREN holds that fit's peak alone.
    probe = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
        "capture_output=True, text=True); sys.stderr.write(done.stderr); "
        "print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else ''); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - began
    lines = done.stdout.strip().splitlines()
    if len(lines) < 2 or not lines[0]:
        raise SystemExit(f"{' '.join(arguments)}: the fit failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[0]), wall, int(lines[1]) / 1024**2  # KiB -> GB
