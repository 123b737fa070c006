"""The micro-batch size chosen from a memory budget (`stgraph.training.memory`)."""

import math

import pytest
import torch

from stgraph.errors import InputError
from stgraph.models import build_model
from stgraph.training.config import TrainConfig
from stgraph.training.memory import CPU_PEAK_FACTOR, largest_fitting, parse_budget, step_bytes
from stgraph.training.trainer import Trainer
from tests.training.test_trainer import _task_and_context


def test_budgets_parse_in_decimal_and_binary_units():
    assert parse_budget("512MB") == 512_000_000
    assert parse_budget("2GiB") == 2 * 1024**3
    assert parse_budget("1.5gb") == 1_500_000_000
    assert parse_budget("auto") == -1
    assert parse_budget("none") is None and parse_budget(None) is None
    for bad in ("lots", "-1GB", "0MB", "12 parsecs"):
        with pytest.raises(InputError, match="train.memory_budget must be auto, none or a size"):
            parse_budget(bad)


def test_largest_fitting_size_is_evened_out_over_the_batch():
    # 100 + 10 m <= 200 -> m = 10; 64 = 7 parts -> 10 each (9.14 rounded up)
    assert largest_fitting(100, 10, 200, 64) == 10
    # 100 + 10 m <= 270 -> m = 17; 64 = 4 parts of 16
    assert largest_fitting(100, 10, 270, 64) == 16
    assert largest_fitting(100, 10, 50, 64) == 1  # nothing fits: one sample at a time
    assert largest_fitting(0, 10, 10**9, 64) == 64  # everything fits: whole batches
    assert largest_fitting(0, 0, 1, 64) == 64  # no per-sample memory measured


def test_cpu_step_bytes_scale_the_saved_activations():
    layer = torch.nn.Linear(1000, 1000)
    x = torch.randn(3, 1000)
    # Linear saves its input (the weight is a parameter, not counted); ReLU saves its output:
    # 2 x [3, 1000] float32 = 24,000 bytes, times the backward pass's factor.
    used = step_bytes(lambda: torch.relu(layer(x)).sum(), layer, torch.device("cpu"))
    assert used == CPU_PEAK_FACTOR * 2 * 3 * 1000 * 4
    assert all(p.grad is None for p in layer.parameters())  # the trial leaves no gradients


def test_the_trainer_takes_the_largest_micro_batch_within_the_budget(tmp_path):
    task, context = _task_and_context()

    def trained(budget):
        torch.manual_seed(0)
        model = build_model("stid", {"hidden": 8, "num_layers": 1, "dropout": 0.0}, context)
        config = TrainConfig(epochs=1, batch_size=16, memory_budget=budget)
        result = Trainer(task, model, config, tmp_path, quiet=True).fit()
        return result.micro_batch_size, [p.detach().clone() for p in model.parameters()]

    whole, full = trained("none")
    roomy, same = trained("10GB")
    assert whole is None and roomy is None  # everything fits: whole batches
    # STID's step here takes about 5 kB per window: a budget of 50 kB splits the batch into
    # equal parts.
    tight, micro = trained("50kB")
    assert tight is not None and 1 < tight < 16
    assert math.ceil(16 / math.ceil(16 / tight)) == tight
    for a, b in zip(full, micro):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # the same training
    for a, b in zip(full, same):
        torch.testing.assert_close(a, b)
