"""How far to trust gram-ode's seasonal prior on los-loop. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/prior_blend.py [--data ../shared/data]

The forecast ``last + w * (prior - last)`` blends persistence (each node's last input) with the
prior of `stgraph.models.gram_ode.SeasonalPrior`: the training mean at the target's time of day
over training days of the target's kind (workday or weekend), falling back to all days. On the
training windows each target is left out of its own mean, as the model sees it in training.
For steps 3, 6 and 12 the script prints:

1. the best fixed ``w`` on the training, validation and test windows, and the mae there;
2. ``w = a + b / days`` (``days`` behind each mean, the form of the model's ``prior_weight``)
   with ``a, b`` fitted on the training windows alone, its ``w`` at the days seen in
   evaluation, and its test mae against the historical average's (the prior with ``w = 1``);
3. a linear ceiling: one forecast per step, linear in 31 features of a node (its last value,
   the prior at the target and at the forecast origin, its window less the last value, and the
   same averaged over its graph neighbours), pooled over nodes and fitted for least absolute
   error on the validation windows, and then on the test windows themselves. The second fit
   sees the answers, so no linear forecast from these inputs can do better on test: it bounds
   what the prior, persistence and the neighbours' recent course give together.

Only the training steps enter the means, and the fits of 1 and 2 use only the training windows.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from stgraph.data.sources import open_dataset
from stgraph.data.windows import calendar_features, split_samples

STEPS_PER_DAY = 288
GRID = np.round(np.arange(-0.2, 1.21, 0.05), 2)


def prior_tables(values, mask, kind, slot, train_steps):
    """Sums and counts of the training values per kind of day and slot: two ``[2, S, N]``."""
    sums = np.zeros((2, STEPS_PER_DAY, values.shape[1]))
    counts = np.zeros_like(sums)
    t = np.arange(train_steps)
    np.add.at(sums, (kind[t], slot[t]), np.where(mask[t], values[t], 0.0))
    np.add.at(counts, (kind[t], slot[t]), mask[t])
    return sums, counts


def prior_at(steps, values, mask, kind, slot, tables, train_steps, leave_out):
    """The prior and the days behind it at ``steps`` (``[W]``): two ``[W, N]``."""
    sums, counts = tables
    own_sums, own_counts = sums[kind[steps], slot[steps]], counts[kind[steps], slot[steps]]
    all_sums, all_counts = sums[:, slot[steps]].sum(0), counts[:, slot[steps]].sum(0)
    if leave_out:
        own = mask[steps] & (steps < train_steps)[:, None]
        value = np.where(own, values[steps], 0.0)
        own_sums, all_sums = own_sums - value, all_sums - value
        own_counts, all_counts = own_counts - own, all_counts - own
    fallback = all_sums / np.maximum(all_counts, 1)
    has_own = own_counts > 0
    mean = np.where(has_own, own_sums / np.maximum(own_counts, 1), fallback)
    return mean, np.where(has_own, own_counts, all_counts)


def last_observed(values, mask, anchors, window=12):
    """Each node's last observed input of the window ending at each anchor (0 if none), as
    `stgraph.models.baselines.Persistence` takes it: ``[W, N]``."""
    last = np.zeros((len(anchors), values.shape[1]))
    for back in reversed(range(window)):  # later steps overwrite earlier ones
        steps = anchors - back
        last = np.where(mask[steps], values[steps], last)
    return last


def observed_window(values, mask, anchors, window=12):
    """Each node's input window less its last observed value (gaps count as it): ``[W, N, 12]``."""
    last = last_observed(values, mask, anchors, window)[..., None]
    back = anchors[:, None] - np.arange(window)  # [W, 12], newest first
    seen = np.moveaxis(values[back], 1, -1)  # [W, N, 12]
    return np.where(np.moveaxis(mask[back], 1, -1), seen, last) - last


def least_absolute_fit(features, target, rounds=40):
    """Weights minimising ``sum |features @ w - target|`` by iteratively reweighted least
    squares (weights ``1 / max(|r|, 0.01)``). scipy's LP form (``linprog``, HiGHS) gives the
    same mae but took minutes for the 80,000 test rows; this takes seconds."""
    weights = np.linalg.lstsq(features, target, rcond=None)[0]
    for _ in range(rounds):
        scale = 1 / np.sqrt(np.maximum(np.abs(features @ weights - target), 0.01))
        weights = np.linalg.lstsq(features * scale[:, None], target * scale, rcond=None)[0]
    return weights


def ceiling_features(values, mask, anchors, prior_target, prior_origin, neighbours):
    """The 31 features of the linear ceiling, ``[W, N, 31]``: a node's last value, the prior at
    the target and at the origin, its window less the last value, those 15 averaged over its
    neighbours (``neighbours``: the row-normalised ``[N, N]`` graph) and a constant."""
    own = np.concatenate(
        [
            np.stack([last_observed(values, mask, anchors), prior_target, prior_origin], -1),
            observed_window(values, mask, anchors),
        ],
        -1,
    )
    around = np.einsum("mn,wnf->wmf", neighbours, own)
    return np.concatenate([own, around, np.ones((*own.shape[:2], 1))], -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    raw = open_dataset("los-loop", data_dir=os.path.join(args.data, "traffic", "los-loop"))
    series = raw.series
    splits = split_samples(series.timestamps, 12, 12, ratios=[0.7, 0.1, 0.2])
    values = series.values[..., 0].astype(np.float64)
    mask = series.mask[..., 0]
    tod, dow = calendar_features(series.timestamps)
    slot = np.round(tod * STEPS_PER_DAY).astype(int) % STEPS_PER_DAY
    kind = (dow >= 5).astype(int)
    tables = prior_tables(values, mask, kind, slot, splits.train_steps)
    linked = (np.asarray(raw.adjacency) > 0) & ~np.eye(values.shape[1], dtype=bool)
    neighbours = linked / np.maximum(linked.sum(1, keepdims=True), 1)
    print(
        f"los-loop: {splits.train_steps} training steps; anchors train/val/test "
        f"{len(splits.train)}/{len(splits.val)}/{len(splits.test)}"
    )
    for step in (3, 6, 12):
        parts = {}
        for name, anchors in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            targets = anchors + step
            prior, days = prior_at(
                targets, values, mask, kind, slot, tables, splits.train_steps, name == "train"
            )
            parts[name] = (
                last_observed(values, mask, anchors),
                prior,
                days,
                values[targets],
                mask[targets],
            )

        def mae(part, weight):
            last, prior, _, y, observed = part
            return np.abs(last + weight * (prior - last) - y)[observed].mean()

        best = {name: min(GRID, key=lambda w, p=part: mae(p, w)) for name, part in parts.items()}
        fixed = ", ".join(
            f"{name} w={best[name]:.2f} (mae {mae(part, best[name]):.3f})"
            for name, part in parts.items()
        )
        train = parts["train"]
        a, b = min(
            ((a, b) for a in GRID for b in np.round(np.arange(-1.5, 1.01, 0.05), 2)),
            key=lambda ab: mae(train, ab[0] + ab[1] / np.maximum(train[2], 1)),
        )
        test = parts["test"]
        weight = a + b / np.maximum(test[2], 1)
        seen = sorted({int(d) for d in np.unique(test[2])})
        at_days = ", ".join(f"{a + b / max(d, 1):.2f} at {d} days" for d in seen)
        print(f"step {step:2d}: best fixed {fixed}")
        print(
            f"         a + b / days fitted on train: a={a:.2f} b={b:.2f} -> {at_days}; "
            f"test mae {mae(test, weight):.3f} vs historical average {mae(test, 1.0):.3f} "
            f"({mae(test, weight) / mae(test, 1.0):.2f}x)"
        )
        ceiling = {}
        for name, anchors in (("val", splits.val), ("test", splits.test)):
            origin_prior = prior_at(
                anchors, values, mask, kind, slot, tables, splits.train_steps, False
            )[0]
            features = ceiling_features(
                values, mask, anchors, parts[name][1], origin_prior, neighbours
            )
            ceiling[name] = features[parts[name][4]], parts[name][3][parts[name][4]]
        test_x, test_y = ceiling["test"]
        fits = ", ".join(
            f"fitted on {name} {np.abs(test_x @ least_absolute_fit(x, y) - test_y).mean():.3f}"
            for name, (x, y) in ceiling.items()
        )
        print(f"         linear ceiling, test mae: {fits} (the answers seen: a bound)")


if __name__ == "__main__":
    main()
