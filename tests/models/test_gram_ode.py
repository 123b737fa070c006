"""GRAM-ODE / STGODE models: shapes, training-only DTW graph and scaler, save/load."""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.data.scaler import per_split_scalers
from stgraph.data.series import Series
from stgraph.data.windows import split_samples
from stgraph.graphs.graph import Graph
from stgraph.models.base import build_model
from stgraph.models.gram_ode import (
    GramODEConfig,
    GramODEFaithfulConfig,
    ODEBackboneConfig,
    STGODEConfig,
)
from stgraph.tasks.forecast import ForecastContext, ForecastTask

# A model run without fit_train falls back to the spatial graph with a warning: here that is a
# test that forgot fit_train (only test_unfitted_model_warns_and_falls_back wants the warning).
pytestmark = pytest.mark.filterwarnings("error:.*fit_train was not called:UserWarning")

N, W, H = 6, 12, 12
SMALL_STGODE = {
    "hidden": 8,
    "tcn_widths": [8, 4, 8],
    "spatial_branches": 1,
    "semantic_branches": 1,
    "dtw_k": 2,
}
SMALL = {**SMALL_STGODE, "local_heads": 2, "local_dk": 8, "out_dk": 24}


def _series(values: np.ndarray) -> Series:
    stamps = pd.date_range("2020-01-01", periods=len(values), freq="2h")
    return Series(values, np.ones_like(values, bool), stamps, tuple(map(str, range(N))))


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    days = 10
    profile = rng.normal(size=(N, 12))
    x = np.tile(profile.T, (days, 1)) * 10 + 50 + rng.normal(size=(days * 12, N))
    return x[:, :, None].astype(np.float32)


def _task(values: np.ndarray) -> ForecastTask:
    series = _series(values)
    splits = split_samples(series.timestamps, W, H, ratios=[0.6, 0.2, 0.2])
    ring = torch.arange(N)
    graph = Graph(torch.stack([ring, (ring + 1) % N]), torch.ones(N), N)
    return ForecastTask(series, graph, splits, W, H, loss="huber")


def _context(task: ForecastTask) -> ForecastContext:
    return ForecastContext(N, 1, 1, W, H, 12, task.graph)


@pytest.mark.parametrize(
    ("name", "params"),
    [("gram-ode", SMALL), ("gram-ode-faithful", SMALL), ("stgode", SMALL_STGODE)],
)
def test_forward_backward_and_save_load(name, params):
    torch.manual_seed(0)
    task = _task(_values())
    model = build_model(name, params, _context(task))
    model.fit_train(task.train_view)
    assert bool(model.semantic_fitted) and model.semantic_operator.abs().sum() > 0
    batch = task.batch(task.splits.train[:4])
    out = model(batch.inputs)
    assert out.shape == (4, H, N, 1)
    task.loss(out, batch).mean().backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    if name == "gram-ode-faithful":
        # The precedence bug leaves the convolutions of same-width TCNs unused (3 of 4).
        assert unused and all(".tcn_" in n and ".convs." in n for n in unused)
        assert not any(".0.tcn_in." in n for n in unused)
    else:
        assert not unused
    model.eval()
    with torch.no_grad():
        expected = model(batch.inputs)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = build_model(name, params, _context(task))
    clone.load_state_dict(torch.load(buffer))
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(batch.inputs), expected)
    torch.testing.assert_close(clone.semantic_operator, model.semantic_operator)


def test_faithful_switches_are_on():
    task = _task(_values())
    model = build_model("gram-ode-faithful", SMALL, _context(task))
    c = model.config
    assert c.tcn_bug and c.clip == "raw" and c.mask_init == "randn" and c.dtw_faithful
    assert not c.last_value_skip and not c.node_readout and model.node_readout is None
    clean = build_model("gram-ode", SMALL, _context(task)).config
    assert not clean.tcn_bug and clean.clip == "softplus" and not clean.dtw_faithful
    assert clean.last_value_skip and clean.node_readout


def _help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}


def test_faithful_config_differs_from_the_clean_one_only_in_the_quirks():
    clean = dataclasses.asdict(GramODEConfig())
    faithful = dataclasses.asdict(GramODEFaithfulConfig())
    assert list(faithful) == list(clean)  # same fields in the same order
    assert {k: v for k, v in faithful.items() if v != clean[k]} == {
        "tcn_bug": True,
        "clip": "raw",
        "mask_init": "randn",
        "dtw_faithful": True,
        "last_value_skip": False,
        "node_readout": False,
        "seasonal_prior": False,
        "readout_window": False,
    }
    assert _help(GramODEFaithfulConfig) == _help(GramODEConfig)


def test_stgode_config_is_the_backbone_plus_its_time_grid():
    assert dataclasses.asdict(STGODEConfig()) == {
        **dataclasses.asdict(ODEBackboneConfig()),
        "t_grid": [0.0, 6.0],
    }
    assert not STGODEConfig().last_value_skip and GramODEConfig().last_value_skip
    assert _help(GramODEConfig)["last_value_skip"] == _help(STGODEConfig)["last_value_skip"]


@pytest.mark.parametrize(("name", "params"), [("gram-ode", SMALL), ("stgode", SMALL_STGODE)])
def test_last_value_skip_adds_each_nodes_last_scaled_input_to_every_horizon(name, params):
    task = _task(_values(3))
    batch = task.batch(task.splits.train[:3])
    outputs = {}
    for skip in (False, True):
        torch.manual_seed(0)
        model = build_model(name, {**params, "last_value_skip": skip}, _context(task)).eval()
        model.fit_train(task.train_view)
        with torch.no_grad():
            outputs[skip] = model(batch.inputs)
    last = batch.inputs.x[:, -1, :, 0]  # [B, N]: each node's last input, in the output's scaling
    assert last.abs().sum() > 0
    for step in range(H):
        torch.testing.assert_close(
            outputs[True][:, step, :, 0], outputs[False][:, step, :, 0] + last
        )


@pytest.mark.parametrize("hidden", [0, 5])
def test_node_readout_reads_each_nodes_features_window_identity_time_of_day_and_prior(hidden):
    task = _task(_values(4))
    batch = task.batch(task.splits.val[:2])
    params = {**SMALL, "last_value_skip": False, "readout_hidden": hidden, "readout_embed": 3}
    torch.manual_seed(0)
    model = build_model("gram-ode", params, _context(task)).eval()
    model.fit_train(task.train_view)
    features = {}
    model.head.register_forward_hook(lambda module, args, out: features.update(x=args[0]))
    readout = model.node_readout
    with torch.no_grad():
        for table in (readout.node.weight, readout.calendar.time_of_day.weight):
            table.normal_()  # far from the small initialisation, so that a mix-up shows
        # Both rows start at 0; the gap's weight is row 0 + row 1 / days behind the mean.
        weights = torch.stack([torch.linspace(-1, 1, H), torch.full((H,), 3.0)])
        model.prior_weight.copy_(weights[..., None])
        out = model(batch.inputs)
        stacked = features["x"]  # [B, N, W * C * branches]
        assert stacked.shape == (2, N, W * SMALL["hidden"] * 2)
        # By hand: node n of window b sees its features, its input window less its last value,
        # the training mean at each target step less its last value, row n of the node table
        # and the calendar rows of the window's last input step.
        means, days = _slot_means(task, batch)
        prior = task.scaler.transform(means[..., None], slice(0, 1))
        gap = (prior - batch.inputs.x[:, -1:])[..., 0].transpose(1, 2)  # [B, N, H]
        window = (batch.inputs.x - batch.inputs.x[:, -1:])[..., 0].transpose(1, 2)  # [B, N, W]
        slot = torch.round(batch.inputs.x_tod[:, -1] * 12).long() % 12
        when = (
            readout.calendar.time_of_day.weight[slot]
            + readout.calendar.day_of_week.weight[batch.inputs.x_dow[:, -1].long()]
        )
        inputs = torch.cat(
            [
                stacked,
                window,
                gap,
                readout.node.weight.expand(2, N, 3),
                when[:, None].expand(2, N, 3),
            ],
            -1,
        )
        layers = [m for m in readout.mlp.modules() if isinstance(m, torch.nn.Linear)]
        hidden_state = inputs @ layers[0].weight.T + layers[0].bias
        if hidden:
            hidden_state = hidden_state.clamp_min(0) @ layers[1].weight.T + layers[1].bias
        # The prior's direct path, its weight following the days behind each mean.
        trust = torch.linspace(-1, 1, H) + 3.0 / days.transpose(1, 2)  # [B, N, H]
        blend = gap * trust
        expected = (model.head(stacked) + hidden_state + blend).view(2, N, H, 1).transpose(1, 2)
        torch.testing.assert_close(out, expected)
        # Only the last input step's calendar enters.
        earlier = dataclasses.replace(batch.inputs, x_tod=batch.inputs.x_tod.clone())
        earlier.x_tod[:, :-1] = 0.5
        torch.testing.assert_close(model(earlier), out)
        later = dataclasses.replace(batch.inputs, x_tod=(batch.inputs.x_tod + 1 / 12) % 1)
        assert not torch.allclose(model(later), out)


def _slot_means(task, batch, leave_out=False, by_kind=True):
    """``[B, H, N]`` by hand: the mean of the training steps at the target's hour, over days of
    the target's kind (Monday-Friday or weekend; all days without ``by_kind``); with
    ``leave_out`` without the target step. And the number of those days, ``[B, H, N]``."""
    stamps = task.series.timestamps
    train = task.series.values[: task.splits.train_steps, :, 0]
    out = torch.zeros(*batch.targets.y.shape[:2], N)
    days = torch.zeros(*batch.targets.y.shape[:2], N)
    for b, anchor in enumerate(batch.inputs.anchor.tolist()):
        for h in range(H):
            step = anchor + 1 + h
            when = stamps[step]
            same = [
                s
                for s in range(task.splits.train_steps)
                if stamps[s].hour == when.hour
                and (not by_kind or (stamps[s].dayofweek >= 5) == (when.dayofweek >= 5))
                and not (leave_out and s == step)
            ]
            out[b, h] = torch.from_numpy(train[same].mean(0))
            days[b, h] = len(same)
    return out, days


def test_seasonal_prior_leaves_a_training_target_out_of_its_own_mean():
    task = _task(_values(6))
    model = build_model("gram-ode", SMALL, _context(task))
    model.fit_train(task.train_view)
    prior = model.prior
    # Ten days from Wednesday 1 January, 2-hour steps: targets on Thursday-Friday and on
    # Saturday-Sunday, all of them training steps.
    batch = task.batch(np.concatenate([task.splits.train[:3], task.splits.train[24:27]]))
    assert int(batch.inputs.anchor.max()) + H < task.splits.train_steps
    assert set(batch.inputs.y_dow.flatten().tolist()) == {3, 4, 5, 6}
    pooled = build_model("gram-ode", {**SMALL, "prior_by_day_type": False}, _context(task))
    pooled.fit_train(task.train_view)
    for training in (False, True):
        for by_kind, module in ((True, prior), (False, pooled.prior)):
            module.train(training)
            means, days = _slot_means(task, batch, leave_out=training, by_kind=by_kind)
            expected = task.scaler.transform(means[..., None], slice(0, 1))
            torch.testing.assert_close(module(batch.inputs), (expected, days[..., None]))
    # The training steps run from Wednesday 1 January to Monday 6 January 16:00: four workdays
    # behind the hours up to 16:00, three behind the later ones, two weekend days; one fewer
    # when the target itself is left out.
    hour_slot = torch.round(batch.inputs.y_tod * 12)
    workdays = torch.where(hour_slot <= 8, 4.0, 3.0)
    behind = torch.where(batch.inputs.y_dow < 5, workdays, 2.0)[..., None, None].expand(
        -1, -1, N, 1
    )
    for training in (False, True):
        assert torch.equal(prior.train(training)(batch.inputs)[1], behind - int(training))
    # The training target was left out: a different mean.
    assert not torch.allclose(prior.train()(batch.inputs)[0], prior.eval()(batch.inputs)[0])
    # A kind of day without training values falls back to the mean over all days.
    weekend = batch.inputs.y_dow >= 5
    workday_prior, workday_days = prior.eval()(batch.inputs)
    prior.sums[1] = 0
    prior.counts[1] = 0
    fallback, fallback_days = prior(batch.inputs)
    torch.testing.assert_close(fallback[~weekend], workday_prior[~weekend])
    torch.testing.assert_close(fallback_days[~weekend], workday_days[~weekend])
    slots = batch.inputs.y_tod * 12  # the weekend targets now see the workday means of their hour
    workday = task.batch(task.splits.train[:12])  # 12 consecutive workday anchors: every hour
    for b, h in weekend.nonzero().tolist():
        same = ((workday.inputs.y_tod * 12 - slots[b, h]).abs() < 1e-3).nonzero()[0]
        torch.testing.assert_close(fallback[b, h], prior(workday.inputs)[0][same[0], same[1]])
        assert torch.equal(fallback_days[b, h], workdays[b, h].expand(N, 1))  # the workdays


def test_held_out_values_change_neither_graph_prior_nor_scaler_of_clean_model():
    base = _values()
    task = _task(base)
    changed = base.copy()
    stop = task.splits.train_steps
    changed[stop:] = np.random.default_rng(5).normal(size=changed[stop:].shape) * 30 + 200
    other = _task(changed)
    np.testing.assert_array_equal(task.scaler.mean, other.scaler.mean)
    np.testing.assert_array_equal(task.scaler.std, other.scaler.std)
    graphs, priors = [], []
    for name in ("gram-ode", "gram-ode-faithful"):
        for t in (task, other):
            torch.manual_seed(0)
            model = build_model(name, SMALL, _context(t))
            model.fit_train(t.train_view)
            graphs.append(model.semantic_operator.clone())
            if model.prior is not None:
                priors.append(torch.cat([model.prior.sums, model.prior.counts]))
    torch.testing.assert_close(graphs[0], graphs[1])  # clean: train-only DTW
    assert len(priors) == 2 and priors[0].abs().sum() > 0
    torch.testing.assert_close(priors[0], priors[1])  # and a train-only seasonal prior
    assert not torch.equal(graphs[2], graphs[3])  # faithful: all days
    # The faithful per-split scaler normalises the test split with the test statistics.
    legacy, legacy_other = (per_split_scalers(t.series, t.splits, W) for t in (task, other))
    np.testing.assert_array_equal(legacy["train"].mean, legacy_other["train"].mean)
    np.testing.assert_array_equal(legacy["train"].std, legacy_other["train"].std)
    assert not np.allclose(legacy["test"].mean, legacy_other["test"].mean)
    rows = (task.splits.test[:, None] + np.arange(-W + 1, 1)).ravel()
    np.testing.assert_allclose(legacy["test"].mean[0], base[rows, :, 0].mean(), rtol=1e-5)


def test_per_split_normalization_scales_and_restores_each_split_with_its_own_statistics():
    values = _values()
    values[-30:] += 25.0  # a level shift late in the series: test statistics differ from train's
    plain = _task(values)
    scalers = per_split_scalers(plain.series, plain.splits, W)
    task = ForecastTask(plain.series, plain.graph, plain.splits, W, H, split_scalers=scalers)
    anchors = task.splits.test[:2]
    test_mean, test_std = float(scalers["test"].mean[0]), float(scalers["test"].std[0])
    batch = next(task.batches("test", 2))
    raw = torch.from_numpy(values[anchors[:, None] + np.arange(-W + 1, 1)])
    torch.testing.assert_close(batch.inputs.x, (raw - test_mean) / test_std)
    # Training batches and the loss use the training statistics, evaluation the split's own.
    train_batch = next(task.batches("train", 2))
    train_mean, train_std = float(scalers["train"].mean[0]), float(scalers["train"].std[0])
    train_anchors = task.splits.train[:2]
    raw = torch.from_numpy(values[train_anchors[:, None] + np.arange(-W + 1, 1)])
    torch.testing.assert_close(train_batch.inputs.x, (raw - train_mean) / train_std)
    assert test_mean - train_mean > 10
    output = torch.zeros(2, H, N, 1)
    torch.testing.assert_close(
        task.predict(output, batch, "test"), torch.full_like(output, test_mean)
    )
    torch.testing.assert_close(
        task.predict(output, train_batch, "train"), torch.full_like(output, train_mean)
    )
    # Without a split (production forecasts) the train-only scaler applies.
    clean_mean = float(plain.scaler.mean[0])
    torch.testing.assert_close(task.predict(output), torch.full_like(output, clean_mean))
    target = train_batch.targets.y
    expected = (train_mean - target).abs().mean()
    torch.testing.assert_close(task.loss(output, train_batch).mean(), expected.float())


def test_unfitted_model_warns_and_falls_back():
    task = _task(_values())
    model = build_model("stgode", SMALL_STGODE, _context(task))
    inputs = task.batch(task.splits.train[:2]).inputs
    with pytest.warns(UserWarning, match="fit_train was not called.*use the spatial graph"):
        out = model(inputs)
    assert out.shape == (2, H, N, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model, not on every forward
        model(inputs)


@pytest.mark.parametrize("policy", ["save-matmuls", "recompute-all"])
def test_checkpointing_leaves_gradients_unchanged(policy):
    task = _task(_values())
    batch = task.batch(task.splits.train[:3])
    grads = []
    for params in ({"checkpoint": False}, {"checkpoint": True, "checkpoint_policy": policy}):
        torch.manual_seed(0)
        model = build_model("gram-ode", {**SMALL, **params}, _context(task))
        model.fit_train(task.train_view)
        torch.manual_seed(1)
        task.loss(model(batch.inputs), batch).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
