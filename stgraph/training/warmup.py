"""Linear learning-rate warm-up per optimizer step, as a torch LR scheduler on top of the epoch
scheduler (``train.scheduler``, stepped once an epoch)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class LinearWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Optimizer step ``s`` (1-based) trains at ``s / warmup_steps`` of the scheduled rate while
    ``s < warmup_steps``, and at the scheduled rate itself from then on.

    Step it after every optimizer step, as torch expects of any scheduler (a float16 step that a
    GradScaler skipped is no step): ``last_epoch`` counts the optimizer steps, and every group's
    ``lr`` is always the rate of the next step (what the history logs). Its state (the step
    count and the scheduled rates) goes into the checkpoint, so a resumed run warms up exactly as
    an unbroken one.

    The epoch scheduler must step through `step_epoch_scheduler`: torch's epoch schedulers
    compute each rate from the last one, so they are handed the scheduled rates, never warmed
    ones, and the warm-up is applied again to what they return.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        # The rates the epoch scheduler set (they differ from the groups' while warming up).
        self.scheduled_lrs = [group["lr"] for group in optimizer.param_groups]
        super().__init__(optimizer)  # its first step sets the rate of optimizer step 1

    def warming(self) -> bool:
        """Whether the next optimizer step still trains at a warmed (scaled) rate."""
        return self.last_epoch + 1 < self.warmup_steps

    def get_lr(self) -> list[float]:
        step = self.last_epoch + 1  # the optimizer step these rates are for
        if step < self.warmup_steps:
            return [lr * step / self.warmup_steps for lr in self.scheduled_lrs]
        if step == self.warmup_steps:
            return list(self.scheduled_lrs)  # the warm-up's last change
        return [group["lr"] for group in self.optimizer.param_groups]  # the epoch scheduler's

    def resume_at(self, steps_done: int) -> None:
        """Continue after ``steps_done`` optimizer steps from the groups' rates, taken as the
        scheduled ones (a checkpoint written before the warm-up was a scheduler)."""
        self.scheduled_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.last_epoch = steps_done
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step_epoch_scheduler(self, step: Callable[[], None]) -> None:
        """Run ``step`` (the epoch scheduler's step) on the scheduled rates."""
        if not self.warming():
            step()
            return
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, self.scheduled_lrs, strict=True):
            group["lr"] = lr
        step()
        self.scheduled_lrs = [group["lr"] for group in groups]
        for group, lr in zip(groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in groups]
