"""HGARN speed and memory on foursquare-nyc-trajgan: seconds per training epoch and peak RSS.

Runs ``stgraph fit foursquare-nyc-trajgan`` (the pipeline: ``hgarn`` at the official sizes,
6.9M parameters, batch 64) for ``--epochs`` epochs in a fresh process per model, in a throw-away
MLflow store, and prints the parameters, seconds per epoch (training and validation), the whole
fit's wall time and the process's peak resident memory. The official code measured on this kind
of machine took 304-392 s per epoch at 8.3 GB (the issue's reference); compare side by side on
one machine. Prints figures; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_hgarn.py [--epochs 2] [--models hgarn,hgarn-faithful]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fit_probe import probe_fit

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mobility" / "foursquare-nyc-trajgan"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", default="hgarn,hgarn-faithful")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"this benchmark reads {DATA}, which is absent")
    print(f"foursquare-nyc-trajgan, {args.epochs} epochs, threads: stgraph's default")
    print(f"{'model':<16} {'parameters':>10} {'s/epoch':>8} {'fit wall s':>10} "
          f"{'peak RSS GB':>11} {'test acc@1':>10} {'test mrr':>8}")  # fmt: skip
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-hgarn-") as tmp:
            arguments = ["foursquare-nyc-trajgan", "--data-dir", str(DATA), "--model", model]
            summary, wall, peak = probe_fit([*arguments, "--epochs", str(args.epochs)], Path(tmp))
        test = summary["test"]
        print(
            f"{model:<16} {summary['parameters']:>10,} {summary['seconds_per_epoch']:>8.1f} "
            f"{wall:>10.1f} {peak:>11.2f} {test['acc@1']:>10.4f} {test['mrr']:>8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
