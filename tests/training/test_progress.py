import io

import torch

from stgraph.models import build_model
from stgraph.training import progress as progress_module
from stgraph.training.config import TrainConfig
from stgraph.training.progress import LogProgress, progress
from stgraph.training.trainer import Trainer
from tests.training.test_trainer import _task_and_context


def test_log_progress_writes_a_line_per_interval_and_none_for_the_last_batch(monkeypatch):
    clock = iter([100.0, 130.0, 161.0, 190.0, 230.0, 400.0])  # start, then one per update
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with LogProgress(5, "epoch 2/8", interval=60, file=out) as bar:
        for loss in ("3.5000", "3.2500", "3.1000", "3.0500", "3.0000"):
            bar.set_postfix(loss=loss)
            bar.update(1)
    # A line at 61 s (2 batches, 30.5 s each, 3 to go), which starts the next interval: 90 s
    # stays silent, 130 s (69 s on) writes, and the 5th batch is the last, so it writes nothing.
    assert out.getvalue() == (
        "epoch 2/8: 2/5 batches, loss 3.2500, 61s (about 92s to go)\n"
        "epoch 2/8: 4/5 batches, loss 3.0500, 130s (about 32s to go)\n"
    )


def test_progress_is_a_bar_on_a_terminal_lines_in_a_log_and_nothing_when_quiet(monkeypatch):
    class Stderr(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(progress_module.sys, "stderr", Stderr(False))
    assert isinstance(progress(3, "epoch 1/1", quiet=False), LogProgress)
    quiet = progress(3, "epoch 1/1", quiet=True)
    assert not isinstance(quiet, LogProgress) and quiet.disable
    monkeypatch.setattr(progress_module.sys, "stderr", Stderr(True))
    bar = progress(3, "epoch 1/1", quiet=False)
    assert not isinstance(bar, LogProgress) and not bar.disable
    bar.close()


def test_a_logged_fit_reports_batches_within_the_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)
    task, context = _task_and_context()
    torch.manual_seed(0)
    model = build_model("stid", {"hidden": 8, "num_layers": 1}, context)
    Trainer(task, model, TrainConfig(epochs=1, batch_size=64), tmp_path).fit()
    lines = capsys.readouterr().err.splitlines()
    batches = task.num_batches("train", 64)
    within = [line for line in lines if line.startswith("epoch 1/1: ")]
    assert [line.split(": ")[1].split(" ")[0] for line in within] == [
        f"{done}/{batches}" for done in range(1, batches)
    ]
    assert "loss " in within[0]
    assert lines[-1].startswith("epoch 1/1  train_loss")
