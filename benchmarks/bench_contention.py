"""Training speed on a busy machine: the same STTN steps alone and beside a CPU-bound neighbour.

A cron host or a shared workstation runs other jobs. This prints, for each OpenMP wait policy and
micro-batch setting, the seconds of ``--steps`` training steps of ``sttn`` on los-loop (the
pipeline's model: embed 64, 3 blocks, 2 heads; batch 64; 2 threads) alone, then beside a
neighbour that keeps 2 threads busy with 1024x1024 matrix products, and the slowdown factor
(beside / alone; a fair share of 2 cores between two 2-thread jobs is about 2).

- policy ``stgraph``: the environment as ``import stgraph`` leaves it (``OMP_WAIT_POLICY=PASSIVE``
  unless set); ``ACTIVE``: spinning threads, torch's default without stgraph.
- micro ``auto``: the micro-batch chosen by ``train.memory_budget`` (default auto); a number: that
  fixed size (``2`` was the pipeline's setting before the memory budget).

Each measurement runs in a fresh process (the wait policy is read when torch loads). Reads the
real los-loop data from ``../shared/data/traffic/los-loop``. Prints figures; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_contention.py [--steps 3] [--repeats 2]
[--policies stgraph,ACTIVE] [--micro 2,auto]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Before torch loads (in the worker), as in the CLI: `import stgraph` sets the wait policy.
import stgraph  # noqa: F401

HERE = Path(__file__).resolve().parents[1]
LOS_LOOP = HERE.parent / "shared" / "data" / "traffic" / "los-loop"
NEIGHBOUR = """
import torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a)
"""


def _steps(steps: int, micro: str) -> dict[str, float]:
    """(In the worker process) seconds of ``steps`` training steps after one warm-up step."""
    import torch

    from stgraph.models import build_model
    from stgraph.pipeline import prepare, resolve_config
    from stgraph.training.trainer import Trainer

    torch.set_num_threads(2)
    flags = {"train.batch_size": 64, "data.data_dir": str(LOS_LOOP)}
    if micro != "auto":
        flags["train.micro_batch_size"] = int(micro)
    config = resolve_config("los-loop", flags=flags)
    task = prepare(config)
    torch.manual_seed(0)
    model = build_model(config.model.name, config.model.params, task.context)
    trainer = Trainer(task, model, config.train, Path("/tmp"), quiet=True)
    if trainer.micro_batch_size is None:
        trainer.micro_batch_size = trainer._fitting_micro_batch()
    batches = task.batches("train", 64, shuffle=True, seed=0)
    model.train()

    def step() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer._accumulate_gradients(next(batches))
        trainer.optimizer.step()

    step()  # warm-up: first-call allocations
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {
        "seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu,
        "micro": trainer.micro_batch_size or 64,
    }


def _measure(policy: str, micro: str, steps: int, neighbour: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy != "stgraph":
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    other = None
    if neighbour:
        other = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=dict(os.environ))
        time.sleep(2)  # let it reach its loop
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", micro, "--steps", str(steps)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--policies", default="stgraph,ACTIVE")
    parser.add_argument("--micro", default="2,auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not LOS_LOOP.is_dir():
        raise SystemExit(f"this benchmark reads los-loop from {LOS_LOOP}, which is absent")
    if args.worker:
        print(json.dumps(_steps(args.steps, args.worker)))
        return
    print(f"sttn on los-loop, batch 64, {args.steps} steps, 2 threads; neighbour: 2 threads")
    print(f"{'policy':<8} {'micro':>5} {'alone s':>16} {'beside s':>16} {'cpu/wall beside':>15} "
          f"{'slowdown':>8}")  # fmt: skip
    for policy in args.policies.split(","):
        for micro in args.micro.split(","):
            alone, beside, ratio, chosen = [], [], [], None
            for _ in range(args.repeats):  # alone and beside alternate
                a = _measure(policy, micro, args.steps, neighbour=False)
                b = _measure(policy, micro, args.steps, neighbour=True)
                alone.append(a["seconds"])
                beside.append(b["seconds"])
                ratio.append(b["cpu_seconds"] / b["seconds"])
                chosen = a["micro"]
            label = f"{chosen}" + (" (auto)" if micro == "auto" else "")
            print(
                f"{policy:<8} {label:>5} {min(alone):>7.2f}-{max(alone):<7.2f} "
                f"{min(beside):>7.2f}-{max(beside):<7.2f} {statistics.median(ratio):>15.2f} "
                f"{statistics.median(beside) / statistics.median(alone):>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
