"""How results are printed: one table per command, or one JSON object with ``--json``."""

from __future__ import annotations

import argparse
import math
from typing import Any


def print_summary(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The human-readable result on stdout (``--json`` prints the JSON object instead)."""
    if args.command in ("fit", "evaluate"):
        print(f"run {result['run_id']}  {result['model']} on {result['dataset']}  (test split)")
        for line in metrics_table(result["test"]):
            print(f"  {line}")
    elif args.command == "job" and args.action == "score":
        for line in score_table(result):
            print(line)
    elif args.command == "runs":
        for line in clean_report(result):
            print(line)


def score_table(result: dict[str, Any]) -> list[str]:
    """``stgraph job score``: the realised error and the scored rows per horizon step."""
    lines = [
        f"job {result['job']}: {result['scored_rows']} of {result['forecast_rows']} forecast "
        f"rows scored, from {result['forecast_files']} files ({result['output']}); MLflow run "
        f"{result['run_id']}"
    ]
    if not result["mae_by_horizon"]:
        lines.append("  no forecast has actuals yet: nothing to score")
        return lines
    lines.append(f"  {'horizon':>7} {result.get('error', 'mae'):>10} {'rows':>8}")
    for horizon, mae in result["mae_by_horizon"].items():
        rows = result["rows_by_horizon"][horizon]
        lines.append(f"  {horizon:>7} {mae:>10.4f} {rows:>8}")
    lines.append(f"  {'all':>7} {result['realised_mae']:>10.4f} {result['scored_rows']:>8}")
    return lines


def clean_report(result: dict[str, Any]) -> list[str]:
    """``stgraph runs clean``: one line per removed folder, then the totals and what was kept."""
    verb = "would remove" if result["dry_run"] else "removed"
    lines = [
        f"{verb} {entry['run_id']}  {entry['status']:<8} {entry['bytes'] / 1e6:8.1f} MB  "
        f"last written {entry['modified']}"
        for entry in result["removed"]
    ]
    lines.append(
        f"{verb} {len(result['removed'])} checkpoint folder(s) in {result['runs_dir']}, "
        f"{result['freed_bytes'] / 1e6:.1f} MB"
    )
    reasons: dict[str, int] = {}
    for entry in result["kept"]:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    if reasons:
        lines.append(
            f"kept {len(result['kept'])}: "
            + "; ".join(f"{count} {reason}" for reason, count in reasons.items())
        )
    return lines


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """Metrics of any task as a table: ``name@k`` and ``name_avgk`` are rows by name and
    columns by ``k`` (``3``, ``avg12``); names without a step follow on one line."""
    import re

    cells: dict[str, dict[str, float]] = {}
    plain = {}
    for name, value in metrics.items():
        match = re.fullmatch(r"(.+?)(?:@(\d+)|_(avg\d+))", name)
        if match:
            cells.setdefault(match[1], {})[match[2] or match[3]] = value
        else:
            plain[name] = value
    columns = sorted(
        {c for row in cells.values() for c in row},
        key=lambda c: (c.startswith("avg"), int(c.removeprefix("avg"))),
    )
    width = max([len(n) for n in cells] + [4])
    lines = [f"{'':{width}}" + "".join(f"{c:>10}" for c in columns)] if cells else []
    for name, row in cells.items():
        values = (f"{row[c]:>10.4f}" if c in row else f"{'':>10}" for c in columns)
        lines.append(f"{name:{width}}" + "".join(values))
    if plain:
        lines.append("  ".join(f"{k} {v:.4g}" for k, v in plain.items()))
    return lines


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value
