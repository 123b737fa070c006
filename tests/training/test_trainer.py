import numpy as np
import pytest
import torch

from stgraph.data.windows import split_samples
from stgraph.errors import InputError, TrainingDiverged
from stgraph.graphs.graph import Graph
from stgraph.models import ForecastModel, build_model
from stgraph.tasks.forecast import ForecastTask
from stgraph.training.checkpoint import load_checkpoint
from stgraph.training.config import TrainConfig
from stgraph.training.trainer import CHECKPOINT, Trainer
from tests.helpers import make_series


def _task_and_context(steps=200):
    rng = np.random.default_rng(0)
    values = 10 + np.sin(np.arange(steps) / 5)[:, None] + rng.normal(0, 0.1, (steps, 3))
    series = make_series(values)
    splits = split_samples(series.timestamps, 4, 2)
    graph = Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), 3)
    task = ForecastTask(series, graph, splits, 4, 2)
    return task, task.context


class _Exploding(ForecastModel):
    def __init__(self, config, context):
        super().__init__(config, context)
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, inputs):
        return inputs.x[:, :2] * self.weight * float("nan")


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    task, context = _task_and_context()
    trainer = Trainer(
        task, _Exploding(None, context), TrainConfig(epochs=2, batch_size=8), tmp_path, quiet=True
    )
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, batch 1.*--lr"):
        trainer.fit()


def test_training_improves_and_checkpoints_every_epoch_with_early_stopping(tmp_path):
    task, context = _task_and_context()
    torch.manual_seed(0)
    model = build_model("stid", {"hidden": 16, "num_layers": 1}, context)
    config = TrainConfig(epochs=30, batch_size=16, lr=0.01, patience=3)
    trainer = Trainer(task, model, config, tmp_path, quiet=True)
    before = trainer.evaluate("val")["mae_avg2"]
    result = trainer.fit()
    assert trainer.evaluate("val")["mae_avg2"] < before
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    assert saved["epoch"] == result.epochs_run
    assert result.epochs_run - result.best_epoch <= 3  # patience
    best = min(h["val_mae_avg2"] for h in result.history)
    assert trainer.evaluate("val")["mae_avg2"] == pytest.approx(best, rel=1e-5)  # best restored
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_bad_settings_are_input_errors(tmp_path):
    task, context = _task_and_context()
    model = build_model("stid", {}, context)
    with pytest.raises(InputError, match="epochs must be positive"):
        Trainer(task, model, TrainConfig(epochs=0), tmp_path)
    with pytest.raises(InputError, match="fewer than one batch"):
        Trainer(task, model, TrainConfig(batch_size=10_000), tmp_path)
    with pytest.raises(InputError, match="optimizer"):
        Trainer(task, model, TrainConfig(optimizer="sgdd"), tmp_path)
    # Scheduler settings fail at construction, not at the first step after a whole epoch.
    cosine = {"scheduler": "cosine", "epochs": 2}
    bad = TrainConfig(**cosine, scheduler_params={"T_max": 2, "eta_min": "tiny"})
    with pytest.raises(
        InputError, match=r"scheduler_params.eta_min .*must be a number, got 'tiny'"
    ):
        Trainer(task, model, bad, tmp_path)
    with pytest.raises(InputError, match="scheduler_params for the cosine scheduler.*T_maxx"):
        Trainer(task, model, TrainConfig(**cosine, scheduler_params={"T_maxx": 2}), tmp_path)
    # A required parameter has no default to compare with: it is caught by a trial step.
    bad = TrainConfig(**cosine, scheduler_params={"T_max": "six"})
    with pytest.raises(InputError, match="scheduler_params for the cosine scheduler"):
        Trainer(task, model, bad, tmp_path)
    bad = TrainConfig(**cosine, scheduler_params={"T_max": 0})
    with pytest.raises(InputError, match="scheduler_params for the cosine scheduler"):
        Trainer(task, model, bad, tmp_path)
    good = Trainer(task, model, TrainConfig(**cosine, scheduler_params={"T_max": 2}), tmp_path)
    assert good.scheduler.last_epoch == 0 and good.optimizer.param_groups[0]["lr"] == 1e-3


def test_micro_batches_give_the_full_batch_gradient(tmp_path):
    task, context = _task_and_context()
    batch = next(task.batches("train", 16))
    batch.targets.y_mask[0, :, 0] = False  # uneven observed counts across micro-batches

    def gradients(micro):
        torch.manual_seed(0)
        model = build_model("stid", {"hidden": 8, "num_layers": 1, "dropout": 0.0}, context)
        config = TrainConfig(batch_size=16, micro_batch_size=micro)
        trainer = Trainer(task, model, config, tmp_path, quiet=True)
        loss = trainer._accumulate_gradients(batch)
        return loss, [p.grad.clone() for p in model.parameters()]

    full_loss, full = gradients(None)
    micro_loss, micro = gradients(5)  # 16 windows -> 5 + 5 + 5 + 1
    assert micro_loss.item() == pytest.approx(full_loss.item(), rel=1e-5)
    for a, b in zip(full, micro):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_lr_scales_give_named_parameters_their_own_rate_through_the_schedule(tmp_path):
    task, context = _task_and_context()
    model = build_model("stid", {}, context)
    config = TrainConfig(
        lr=1e-3,
        lr_scales={"head": 10, "encoder": 0.5, "encoder.1": 2},  # the longest prefix wins
        scheduler="step",
        scheduler_params={"step_size": 1, "gamma": 0.1},
    )
    trainer = Trainer(task, model, config, tmp_path, quiet=True)
    rate = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3  # the base group comes first
    assert rate[id(named["node"])] == rate[id(named["input_projection.weight"])] == 1e-3
    assert rate[id(named["head.weight"])] == rate[id(named["head.bias"])] == pytest.approx(1e-2)
    assert rate[id(named["encoder.0.layers.0.weight"])] == pytest.approx(5e-4)
    assert rate[id(named["encoder.1.layers.3.bias"])] == pytest.approx(2e-3)
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == len(named)
    trainer.optimizer.step()  # no gradients: no change, but torch wants it before the next
    trainer.scheduler.step()  # the schedule scales every group alike
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        [1e-4, 5e-5, 2e-4, 1e-3]  # base, encoder, encoder.1, head: in parameter order
    )
    # A prefix matches whole name components: "hea" does not catch "head.weight".
    with pytest.raises(InputError, match=r"lr_scales names \['hea'\].*start with \['day_of_week'"):
        Trainer(task, model, TrainConfig(lr_scales={"hea": 2}), tmp_path)
    with pytest.raises(InputError, match=r"lr_scales\['head'\] must be a positive number"):
        Trainer(task, model, TrainConfig(lr_scales={"head": 0}), tmp_path)


# The test replaces optimizer.step to record the rates, which torch's schedulers warn about;
# the trainer itself raises no such warning (see test_warmup_is_a_torch_scheduler_...).
@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_warmup_scales_the_first_steps_and_leaves_the_schedule_alone(tmp_path):
    task, context = _task_and_context()
    base = {"lr": 1e-2, "lr_scales": {"head": 10}, "epochs": 2, "batch_size": 8}
    cosine = {"scheduler": "cosine", "scheduler_params": {"T_max": 2}, "limit_batches": 2}

    def rates(warmup_steps):
        model = build_model("stid", {}, context)
        config = TrainConfig(**base, **cosine, warmup_steps=warmup_steps, patience=None)
        trainer = Trainer(task, model, config, tmp_path / str(warmup_steps), quiet=True)
        seen, step = [], trainer.optimizer.step

        def recording_step(*args, **kwargs):
            seen.append([group["lr"] for group in trainer.optimizer.param_groups])
            return step(*args, **kwargs)

        trainer.optimizer.step = recording_step
        trainer.fit()
        flat = [rate for step_rates in seen for rate in step_rates]  # approx takes flat lists
        return flat, [group["lr"] for group in trainer.optimizer.param_groups]

    plain, plain_after = rates(0)
    warmed, warmed_after = rates(3)
    # Cosine over 2 epochs: 1e-2 in epoch 1, 5e-3 in epoch 2 (x10 for the head group).
    assert plain == pytest.approx([1e-2, 1e-1] * 2 + [5e-3, 5e-2] * 2)
    # Steps 1 and 2 at 1/3 and 2/3 of the scheduled rate, from step 3 on the schedule itself.
    assert warmed == pytest.approx([1e-2 / 3, 1e-1 / 3, 2e-2 / 3, 2e-1 / 3, *plain[4:]])
    assert warmed_after == pytest.approx(plain_after)  # the scheduler never saw a scaled rate
    with pytest.raises(InputError, match="warmup_steps must be 0 or more"):
        Trainer(task, build_model("stid", {}, context), TrainConfig(warmup_steps=-1), tmp_path)


# torch's own complaints about the order of optimizer and scheduler steps
_ORDER_WARNINGS = r".*(lr_scheduler\.step\(\)|optimizer\.step\(\))"


def _recording(trainer):
    """Record every group's rate at each optimizer step, the way torch supports (a pre-hook:
    replacing ``optimizer.step`` would itself make torch warn)."""
    seen = []
    trainer.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append([g["lr"] for g in optimizer.param_groups])
    )
    return seen


@pytest.mark.filterwarnings(f"error:{_ORDER_WARNINGS}:UserWarning")
def test_warmup_is_a_torch_scheduler_that_resumes_exactly(tmp_path):
    task, context = _task_and_context()
    config = TrainConfig(
        lr=1e-2, lr_scales={"head": 10}, epochs=3, batch_size=8, limit_batches=2, patience=None,
        scheduler="step", scheduler_params={"step_size": 1, "gamma": 0.5}, warmup_steps=5,
    )  # fmt: skip

    def run(folder, stop_after=None, resume=False):
        torch.manual_seed(0)
        trainer = Trainer(task, build_model("stid", {}, context), config, folder, quiet=True)
        seen = _recording(trainer)

        def stop(epoch, metrics):
            if epoch == stop_after:
                raise KeyboardInterrupt  # after the epoch's checkpoint, as Ctrl-C would

        trainer.on_epoch = stop
        try:
            result = trainer.fit(resume=resume)
        except KeyboardInterrupt:
            result = None
        return trainer, [rate for rates in seen for rate in rates], result

    trainer, unbroken, result = run(tmp_path / "a")
    assert isinstance(trainer.warmup, torch.optim.lr_scheduler.LRScheduler)
    # Six steps of two groups (x10 for the head); the step schedule halves the rate each epoch
    # and the warm-up scales steps 1-4 by s/5, spanning the first two epochs.
    assert unbroken == pytest.approx(
        [2e-3, 2e-2, 4e-3, 4e-2, 3e-3, 3e-2, 4e-3, 4e-2, 2.5e-3, 2.5e-2, 2.5e-3, 2.5e-2]
    )
    # The groups hold the next step's rate: what the history logs as `lr`.
    assert [h["lr"] for h in result.history] == pytest.approx([3e-3, 2.5e-3, 1.25e-3])
    assert load_checkpoint(tmp_path / "a" / CHECKPOINT)["warmup"]["last_epoch"] == 6

    _, first, _ = run(tmp_path / "b", stop_after=1)
    _, rest, resumed = run(tmp_path / "b", resume=True)
    assert first + rest == unbroken  # exactly, not approximately
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in result.history]


@pytest.mark.filterwarnings(f"error:{_ORDER_WARNINGS}:UserWarning")
def test_a_skipped_float16_step_is_no_warmup_step(tmp_path):
    class OverflowingFirstStep:
        """A float16 GradScaler whose first step overflows: skipped, and the scale halves."""

        def __init__(self):
            self.scale_value, self.steps = 2.0**16, 0

        def scale(self, loss):
            return loss

        def unscale_(self, optimizer):
            pass

        def get_scale(self):
            return self.scale_value

        def step(self, optimizer):
            self.steps += 1
            if self.steps > 1:
                optimizer.step()

        def update(self):
            if self.steps == 1:
                self.scale_value /= 2

    task, context = _task_and_context()
    config = TrainConfig(lr=3e-2, epochs=1, batch_size=8, limit_batches=4, warmup_steps=3)
    trainer = Trainer(task, build_model("stid", {}, context), config, tmp_path, quiet=True)
    trainer._scaler = OverflowingFirstStep()
    seen = _recording(trainer)
    trainer.fit()
    # Batch 1 was skipped; the three steps taken warm up from 1/3 as if it had not been there.
    assert [rates[0] for rates in seen] == pytest.approx([1e-2, 2e-2, 3e-2])
