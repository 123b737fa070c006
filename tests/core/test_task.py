import numpy as np
import torch

from stgraph.data.windows import split_samples
from stgraph.graphs.graph import Graph
from stgraph.tasks.forecast import ForecastTask
from tests.helpers import make_series


def _task(values, window=3, horizon=2, **kwargs):
    series = make_series(values)
    splits = split_samples(series.timestamps, window, horizon, ratios=[0.6, 0.2, 0.2])
    empty = Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), series.num_nodes)
    return ForecastTask(series, empty, splits, window, horizon, **kwargs)


def test_batch_gathers_windows_by_index_arithmetic():
    values = np.arange(1, 41, dtype=np.float32).reshape(20, 2)  # node 0: 1,3,5..; node 1: 2,4,..
    task = _task(values)
    batch = task.batch(np.array([2, 5]))
    raw_x = task.scaler.inverse(batch.inputs.x)
    np.testing.assert_allclose(raw_x[0, :, 0, 0].numpy(), [1, 3, 5], rtol=1e-5)  # steps 0..2
    np.testing.assert_allclose(batch.targets.y[1, :, 1, 0].numpy(), [14, 16])  # steps 6, 7 of n1
    assert batch.inputs.x.shape == (2, 3, 2, 1) and batch.targets.y.shape == (2, 2, 2, 1)
    assert batch.inputs.x_tod.shape == (2, 3) and batch.inputs.y_dow.shape == (2, 2)
    assert not hasattr(batch.inputs, "y")  # a model's inputs hold no target


def test_scaler_sees_training_steps_only():
    values = np.ones((40, 1), dtype=np.float32)
    values[30:] = 1000.0  # validation/test values must not move the statistics
    task = _task(values)
    assert task.splits.train_steps <= 30
    assert task.scaler.mean.tolist() == [1.0]


def test_unobserved_inputs_are_zero_after_scaling_and_masked():
    values = np.full((20, 1), 10.0, dtype=np.float32)
    values[::2] = 5.0
    values[3] = 0.0  # missing
    task = _task(values)
    batch = task.batch(np.array([3]))
    assert not batch.inputs.x_mask[0, -1, 0, 0] and batch.inputs.x[0, -1, 0, 0] == 0.0


def test_loss_is_masked_and_covers_only_returned_steps():
    values = np.full((20, 1), 4.0, dtype=np.float32)
    values[6] = 0.0  # the target at step 6 is missing
    task = _task(values)
    batch = task.batch(np.array([4]))  # targets: steps 5 and 6
    scaled_two = task.scaler.transform(torch.full((1, 2, 1, 1), 6.0))
    loss = task.loss(scaled_two, batch)
    assert (loss.total.item(), loss.weight.item()) == (2.0, 1)  # step 6 masked: only |6 - 4|
    assert task.loss(scaled_two[:, :1], batch).mean().item() == 2.0  # one-step output
    assert task.loss_weight(batch, scaled_two).item() == 1


def test_shuffle_depends_on_seed_and_epoch_only():
    task = _task(np.random.default_rng(0).random((60, 2)).astype(np.float32) + 1)
    order = lambda epoch: torch.cat(  # noqa: E731
        [b.inputs.anchor for b in task.batches("train", 4, True, 7, epoch)]
    )
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    ranks = [
        torch.cat([b.inputs.anchor for b in task.batches("train", 4, True, 7, 1, r, 2)])
        for r in (0, 1)
    ]
    assert sorted(torch.cat(ranks).tolist()) == sorted(task.splits.train.tolist())
