"""The cross-section baselines: momentum against hand-compounded returns, ridge against the
closed form solved in numpy, the MLP's shapes, gradients and stock symmetry, and bad parameters."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from stgraph.errors import InputError
from stgraph.models import build_model
from stgraph.tasks.base import Batch
from stgraph.tasks.cross_section.batch import (
    CrossSectionBatch,
    CrossSectionInputs,
    CrossSectionTargets,
    StockContext,
)


def make_context(n: int = 4, f: int = 3, w: int = 5, h: int = 2) -> StockContext:
    return StockContext(num_stocks=n, num_factors=f, window=w, horizon=h)


def make_inputs(b: int, context: StockContext, seed: int = 0) -> CrossSectionInputs:
    g = torch.Generator().manual_seed(seed)
    w, n, f = context.window, context.num_stocks, context.num_factors
    return CrossSectionInputs(
        factors=torch.randn(b, w, n, f, generator=g),
        returns=0.02 * torch.randn(b, w, n, generator=g),
        observed=torch.rand(b, w, n, generator=g) > 0.2,
        calendar=torch.zeros(b, w + context.horizon, 2, dtype=torch.long),
        anchor=torch.arange(b),
    )


def make_targets(b: int, context: StockContext, seed: int = 1) -> CrossSectionTargets:
    g = torch.Generator().manual_seed(seed)
    shape = (b, context.horizon, context.num_stocks)
    target = torch.randn(shape, generator=g)
    mask = torch.rand(shape, generator=g) > 0.3
    return CrossSectionTargets(
        returns=target, target=target, low_target=target, up=target > 0, mask=mask, class_mask=mask
    )


class FakeTrain:
    """The duck-typed train view ridge reads: ``batches(batch_size)`` of training batches."""

    def __init__(self, batch: CrossSectionBatch) -> None:
        self.batch = batch
        self.sizes: list[int] = []

    def batches(self, batch_size: int) -> Iterator[CrossSectionBatch]:
        self.sizes.append(batch_size)
        yield from self.batch.split(batch_size)


# ------------------------------------------------------------------------------ momentum
def test_momentum_compounds_the_observed_returns_of_the_lookback():
    context = make_context(n=3, f=1, w=5, h=2)
    returns = torch.tensor(
        [
            [9.0, 9.0, 9.0],  # outside the lookback of 3
            [0.0, 0.0, 0.0],
            [0.10, 0.10, 0.30],
            [-0.05, 0.50, 0.20],  # stock 1 unobserved here: its 0.5 must not count
            [0.02, 0.02, 0.10],
        ]
    )[None]
    observed = torch.ones(1, 5, 3, dtype=torch.bool)
    observed[0, 3, 1] = False
    observed[0, 2:4, 2] = False  # stock 2: one observed day of three (< min_days = 2)
    inputs = CrossSectionInputs(
        factors=torch.zeros(1, 5, 3, 1),
        returns=returns,
        observed=observed,
        calendar=torch.zeros(1, 7, 2, dtype=torch.long),
        anchor=torch.zeros(1, dtype=torch.long),
    )
    model = build_model("momentum", {"lookback": 3}, context)
    out = model(inputs)
    want = torch.tensor([1.10 * 0.95 * 1.02 - 1, 1.10 * 1.02 - 1, 0.0])
    assert out.score.shape == (1, 2, 3) and out.logits is None
    torch.testing.assert_close(out.score[0], want.expand(2, 3))
    # With min_days = 1 stock 2 scores its one observed day.
    loose = build_model("momentum", {"lookback": 3, "min_days": 1}, context)
    torch.testing.assert_close(loose(inputs).score[0, 0, 2], torch.tensor(0.10))
    assert not model.trainable and not list(model.parameters())


# ------------------------------------------------------------------------------ ridge
def numpy_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge with an unpenalised intercept, on the rows given."""
    a = np.hstack([x, np.ones((len(x), 1))])
    penalty = np.diag([alpha] * x.shape[1] + [0.0])
    solution = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return solution[:-1], solution[-1]


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_ridge_matches_the_closed_form_on_the_masked_cells(alpha):
    context = make_context(n=5, f=3, w=4, h=2)
    inputs, targets = make_inputs(40, context), make_targets(40, context)
    model = build_model("ridge", {"days": 2, "alpha": alpha, "fit_batch_size": 7}, context)
    train = FakeTrain(Batch(inputs, targets))
    model.fit_train(train)
    assert train.sizes == [7]
    # Features: factors of day -2 then day -1 of each (date, stock) row.
    fac = inputs.factors.numpy()
    x = np.concatenate([fac[:, -2], fac[:, -1]], axis=-1)  # [B, N, 6]
    for h in range(2):
        keep = targets.mask[:, h].numpy()
        w, b = numpy_ridge(x[keep], targets.target[:, h].numpy()[keep], alpha)
        np.testing.assert_allclose(model.weight[h].numpy(), w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.bias[h].item(), b, rtol=1e-4, atol=1e-5)
    score = model(inputs).score
    want = np.einsum("bnd,hd->bhn", x, model.weight.numpy()) + model.bias.numpy()[:, None]
    np.testing.assert_allclose(score.numpy(), want, rtol=1e-5, atol=1e-5)
    # A fresh model takes the fitted weights from a state dict.
    fresh = build_model("ridge", {"days": 2, "alpha": alpha}, context)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(inputs).score, score)


def test_ridge_shrinks_the_weights_but_not_the_intercept():
    context = make_context(n=5, f=3, w=4, h=2)
    inputs, targets = make_inputs(30, context), make_targets(30, context)
    targets.target.add_(5.0)  # a mean far from 0
    model = build_model("ridge", {"alpha": 1e9}, context)
    model.fit_train(FakeTrain(Batch(inputs, targets)))
    assert model.weight.abs().max() < 1e-6
    for h in range(2):
        keep = targets.mask[:, h]
        mean = targets.target[:, h][keep].mean()
        torch.testing.assert_close(model.bias[h], mean, rtol=0, atol=1e-4)


def test_ridge_without_a_known_target_says_so():
    context = make_context()
    targets = make_targets(3, context)
    targets.mask.zero_()
    model = build_model("ridge", {}, context)
    with pytest.raises(InputError, match="no training sample"):
        model.fit_train(FakeTrain(Batch(make_inputs(3, context), targets)))


# ------------------------------------------------------------------------------ mlp
def test_mlp_shapes_gradients_and_stock_symmetry():
    torch.manual_seed(0)
    context = make_context(n=6, f=4, w=20, h=2)
    model = build_model("mlp", {"days": 2}, context)
    inputs = make_inputs(3, context)
    out = model(inputs)
    assert out.score.shape == (3, 2, 6) and out.logits.shape == (3, 2, 6, 2)
    (out.score.sum() + out.logits.square().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Shared across stocks: permuting the stocks permutes the answers.
    model.eval()
    perm = torch.randperm(6)
    shuffled = CrossSectionInputs(
        factors=inputs.factors[:, :, perm],
        returns=inputs.returns[:, :, perm],
        observed=inputs.observed[:, :, perm],
        calendar=inputs.calendar,
        anchor=inputs.anchor,
    )
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled).score, model(inputs).score[:, :, perm])
    # Factors of input days before the last two are not read.
    older = CrossSectionInputs(
        factors=inputs.factors.clone().index_fill_(1, torch.tensor([0]), 7.0),
        returns=inputs.returns,
        observed=inputs.observed,
        calendar=inputs.calendar,
        anchor=inputs.anchor,
    )
    with torch.no_grad():
        torch.testing.assert_close(model(older).score, model(inputs).score)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("momentum", {"lookback": 21}, "lookback = 21 must be between 1 and the input window"),
        ("momentum", {"lookback": 0}, "lookback = 0"),
        ("momentum", {"lookback": 10, "min_days": 11}, "min_days = 11"),
        ("ridge", {"days": 21}, "days = 21"),
        ("ridge", {"alpha": -1.0}, "alpha = -1.0"),
        ("ridge", {"fit_batch_size": 0}, "fit_batch_size = 0"),
        ("mlp", {"return_days": 21}, "return_days = 21"),
        ("mlp", {"days": 0}, "days = 0"),
        ("mlp", {"hidden": 0}, "hidden = 0"),
        ("mlp", {"dropout": 1.0}, "dropout = 1.0"),
    ],
)
def test_bad_parameters_are_input_errors(name, params, message):
    with pytest.raises(InputError, match=f"model.params of '{name}'.*{message}"):
        build_model(name, params, make_context(w=20))
