"""What a next-location run reports about a scored split: Acc@k for every k up to the largest
cut-off (all samples, recurring, explorative), accuracy by the length of the input history, and
each sample's top locations as a long table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from stgraph.tasks.base import Report
from stgraph.tasks.next_location.scoring import NextLocationPrediction


def _figure(**kwargs):
    """A figure outside pyplot: no display and no global backend switch (cron, CI, notebooks)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def concat_predictions(predictions: list[NextLocationPrediction]) -> NextLocationPrediction:
    """The predictions of every batch as one, on the CPU."""
    parts = [p.to("cpu") for p in predictions]
    fields = {}
    for field in dataclasses.fields(NextLocationPrediction):
        values = [getattr(p, field.name) for p in parts]
        fields[field.name] = None if any(v is None for v in values) else torch.cat(values)
    return NextLocationPrediction(**fields)


def sample_table(task, prediction: NextLocationPrediction, split: str) -> pd.DataFrame:
    """One row per sample: ``user`` (id), ``event`` (its target's index in the log), ``target``
    (-1: unseen in training), ``recurring``, ``explorative``, ``history`` (input check-ins) and
    ``rank`` of the true location (pessimistic; inf where it cannot be ranked)."""
    samples = task.index.splits[split]
    user = prediction.user.numpy()
    event = task.index.user_start[user] + prediction.position.numpy() + 1
    at = np.searchsorted(samples.target, event)
    target = samples.location[at]
    return pd.DataFrame(
        {
            "user": user,
            "event": event,
            "target": target,
            "recurring": samples.recurring[at],
            "explorative": samples.explorative[at],
            "history": prediction.position.numpy() + 1,
            "rank": prediction.rank(torch.from_numpy(target < 0)).numpy(),
        }
    )


def predictions_frame(task, prediction: NextLocationPrediction, table: pd.DataFrame):
    """Long table, ``top_k`` rows per sample: ``user``, ``as_of`` (its last input check-in),
    ``time`` and ``target`` (the true next check-in), ``target_rank``, ``recurring``,
    ``explorative``, then ``rank``, ``location`` and ``score`` of each listed location; users
    and locations by their original names."""
    log = task.log
    k = prediction.top_location.shape[1]
    event = table["event"].to_numpy()
    repeat = lambda values: np.repeat(np.asarray(values), k)  # noqa: E731
    rank = table["rank"].to_numpy()
    return pd.DataFrame(
        {
            "user": repeat(log.users[table["user"].to_numpy()]).astype(str),
            "as_of": repeat(log.time[event - 1]),
            "time": repeat(log.time[event]),
            "target": repeat(log.locations[log.location[event]]).astype(str),
            "target_rank": repeat(np.where(np.isfinite(rank), rank, np.nan)),
            "recurring": repeat(table["recurring"]),
            "explorative": repeat(table["explorative"]),
            "rank": np.tile(np.arange(1, k + 1), len(table)),
            "location": log.locations[prediction.top_location.numpy().reshape(-1)].astype(str),
            "score": prediction.top_score.numpy().reshape(-1).astype(np.float64),
        }
    )


def acc_by_k_figure(table: pd.DataFrame, max_k: int, title: str):
    """Acc@k for k = 1 .. ``max_k``: every sample, recurring and explorative ones."""
    figure = _figure(figsize=(6, 3.5))
    axis = figure.subplots()
    ks = np.arange(1, max_k + 1)
    rank = table["rank"].to_numpy()
    for label, mask in (
        ("all", np.ones(len(table), dtype=bool)),
        ("recurring", table["recurring"].to_numpy()),
        ("explorative", table["explorative"].to_numpy()),
    ):
        if mask.any():
            values = (rank[mask][:, None] <= ks[None, :]).mean(0)
            axis.plot(ks, values, marker="o", markersize=3, label=f"{label} (n={mask.sum()})")
    axis.set_xlabel("k (locations listed)")
    return _finish(figure, axis, "Acc@k", title)


def history_bins(history: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each sample's bin of input length, doubling widths (1, 2-3, 4-7, ...), and their labels."""
    bins = np.floor(np.log2(np.maximum(history, 1))).astype(np.int64)
    labels = [str(1 << b) if b == 0 else f"{1 << b}-{(2 << b) - 1}" for b in range(bins.max() + 1)]
    return bins, labels


def history_figure(table: pd.DataFrame, ks: tuple[int, ...], title: str):
    """Acc@1 and Acc@k (k = 10, or the largest cut-off) by the length of the input history."""
    figure = _figure(figsize=(7, 3.5))
    axis = figure.subplots()
    bins, labels = history_bins(table["history"].to_numpy())
    present = np.unique(bins)
    rank = table["rank"].to_numpy()
    counts = np.bincount(bins, minlength=len(labels))
    for k in sorted({1, 10 if 10 in ks else max(ks)}):
        hits = np.bincount(bins, weights=(rank <= k).astype(float), minlength=len(labels))
        axis.plot(present, hits[present] / counts[present], marker="o", label=f"Acc@{k}")
    axis.set_xticks(present, [f"{labels[b]}\n(n={counts[b]})" for b in present], fontsize=7)
    axis.set_xlabel("check-ins in the input history")
    return _finish(figure, axis, "accuracy", title)


def _finish(figure, axis, ylabel: str, title: str):
    """An accuracy plot's shared frame: the [0, 1] axis, its title, grid and legend."""
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def next_location_report(
    task, split: str, predictions: list[NextLocationPrediction], model_name: str
) -> Report:
    report = Report()
    if not predictions:
        return report
    prediction = concat_predictions(predictions)
    table = sample_table(task, prediction, split)
    name = f"{model_name} on {task.dataset_name}, {split} split"
    ks = tuple(task.config.ks)
    report.figures[f"plots/{split}_acc_by_k.png"] = acc_by_k_figure(
        table, max(ks), f"Acc@k by k: {name}"
    )
    report.figures[f"plots/{split}_accuracy_by_history.png"] = history_figure(
        table, ks, f"Accuracy by history length: {name}"
    )
    frame = predictions_frame(task, prediction, table)
    report.tables[f"predictions/{split}_predictions.parquet"] = frame
    report.tables["data/preprocessing.parquet"] = preprocessing_table(task.sessions.describe())
    return report


def preprocessing_table(described: dict) -> pd.DataFrame:
    """Users, locations and check-ins after each preprocessing step, then sessions per split:
    what the filters and the split did to this run's data."""
    rows = [{"step": step, **counts} for step, counts in described.get("stages", {}).items()]
    splits = ("history", "train", "val", "test")
    rows += [
        {"step": f"{name} sessions", "sessions": described[f"{name}_sessions"],
         "events": described[f"{name}_events"]}
        for name in splits if f"{name}_sessions" in described
    ]  # fmt: skip
    return pd.DataFrame(rows)
