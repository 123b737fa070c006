"""Stockformer speed and memory on stocknet: seconds per training epoch and peak RSS.

Runs ``stgraph fit stocknet`` (the pipeline: the 84 stocks with a full training history, train
2012-09..2015, validation 2016, test 2017-01..08, 20 days in, 2 out, 360 Alpha360 factors,
batch 12) for ``--epochs`` epochs in a fresh process per model, in a throw-away MLflow store, and
prints the parameters, seconds per epoch (training and validation), the fit's wall time, its peak
resident memory and the test IC / RankIC. The official code took about 275 s per epoch at
6.2 GB peak on this kind of machine (the issue's reference); compare side by side on one machine.
Prints figures; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_stockformer.py [--epochs 1]
[--models stockformer,stockformer-faithful,momentum,ridge,mlp] [--set train.memory_budget=512MB]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fit_probe import probe_fit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "finance" / "stocknet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--models", default="stockformer,stockformer-faithful")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], help="a config assignment for every fit (repeatable)"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"this benchmark reads {DATA}, which is absent")
    print(f"stocknet, {args.epochs} epoch(s), threads: {args.threads or 'stgraph default'}")
    print(f"{'model':<22} {'parameters':>10} {'s/epoch':>8} {'fit wall s':>10} "
          f"{'peak RSS GB':>11} {'test ic':>8} {'rank_ic':>8}")  # fmt: skip
    for model in args.models.split(","):
        arguments = ["stocknet", "--data-dir", str(DATA), "--model", model]
        arguments += ["--epochs", str(args.epochs)]
        if args.threads:
            arguments += ["--threads", str(args.threads)]
        for assignment in args.set:
            arguments += ["--set", assignment]
        with tempfile.TemporaryDirectory(prefix="bench-stockformer-") as tmp:
            summary, wall, peak = probe_fit(arguments, Path(tmp))
        test = summary["test"]
        print(
            f"{model:<22} {summary['parameters']:>10,} {summary['seconds_per_epoch']:>8.1f} "
            f"{wall:>10.1f} {peak:>11.2f} {test['ic']:>8.4f} {test['rank_ic']:>8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
