"""One training loop for every task and model, typed against the `Task` protocol alone.

Early stopping and model selection use the validation split only; the test split is scored once,
with the best validation model, after training. Every epoch ends with an atomic checkpoint of the
whole training state (weights, optimiser, schedulers, early-stopping state, RNG), so a killed run
resumed with ``--resume`` finishes with the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stgraph.errors import InputError, TrainingDiverged
from stgraph.metrics import SplitMetrics
from stgraph.models.base import Model
from stgraph.tasks.base import Batch, Task
from stgraph.training import distributed
from stgraph.training.checkpoint import load_checkpoint, save_checkpoint
from stgraph.training.config import TrainConfig
from stgraph.training.memory import fitting_micro_batch, parse_budget
from stgraph.training.optim import build_optimization, check_config, resolve_device
from stgraph.training.progress import progress

CHECKPOINT = "checkpoint.pt"


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    seconds_per_epoch: float
    history: list[dict[str, float]] = field(default_factory=list)
    micro_batch_size: int | None = None  # None: whole batches


class Trainer:
    """Trains ``model`` on ``task`` with ``config``, checkpointing into ``run_dir``.

    Args:
        on_epoch: called with ``(epoch, metrics)`` after each epoch's checkpoint is written
            (the MLflow tracker logs there).
        quiet: no progress bar and no per-epoch lines.
        dist: the ``torchrun`` process group (see `stgraph.training.distributed`); only rank 0
            writes checkpoints, reports and calls ``on_epoch``.
    """

    def __init__(
        self,
        task: Task,
        model: Model,
        config: TrainConfig,
        run_dir: Path,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        quiet: bool = False,
        dist: distributed.Context = distributed.SINGLE,
    ) -> None:
        if config.epochs <= 0:
            raise InputError(f"train.epochs must be positive, got {config.epochs}.")
        if config.batch_size <= 0:
            raise InputError(f"train.batch_size must be positive, got {config.batch_size}.")
        if task.num_samples("train") < config.batch_size:
            raise InputError(
                f"The training split has {task.num_samples('train')} {task.sample_noun}, fewer "
                f"than one batch of {config.batch_size}. Lower --batch-size or use more data."
            )
        check_config(config)
        self.budget = parse_budget(config.memory_budget)
        self.task = task
        self.config = config
        self.micro_batch_size = config.micro_batch_size
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.on_epoch = on_epoch if dist.is_main else None
        self.quiet = quiet or not dist.is_main
        self.device = resolve_device(config.device, dist.local_rank)
        self.model = model.to(self.device)
        # Training runs through the DDP wrapper (gradient averaging); evaluation and state
        # dicts use the bare model, so checkpoints look the same with or without torchrun.
        self.network = self.model
        if dist.enabled and model.trainable:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.eval_batch_size = config.eval_batch_size or 2 * config.batch_size
        self.monitor = config.monitor or task.monitor
        self.maximize = task.goal(self.monitor) == "max"
        self.optimizer, self.scheduler, self.warmup = (
            build_optimization(model, config, self.maximize) if model.trainable else (None,) * 3
        )
        self._scaler = torch.amp.GradScaler("cuda", enabled=self._amp_dtype() == torch.float16)

    # ------------------------------------------------------------------ public
    def fit(self, resume: bool = False) -> FitResult:
        """Train (or, for a model with nothing to learn by gradient, just fit its statistics)."""
        config = self.config
        self.model.fit_train(self.task.train_view)
        if not self.model.trainable:
            metrics = self.evaluate("val")
            if self.on_epoch:
                self.on_epoch(1, {f"val_{k}": v for k, v in metrics.items()})
            return FitResult(
                best_epoch=1,
                epochs_run=1,
                seconds_per_epoch=0.0,
                history=[{f"val_{k}": v for k, v in metrics.items()}],
            )

        if self.micro_batch_size is None:
            self.micro_batch_size = self._fitting_micro_batch()
        state = self._initial_state(resume)
        epoch_seconds: list[float] = state["epoch_seconds"]
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            val = self.evaluate("val")
            elapsed = time.perf_counter() - started
            epoch_seconds.append(elapsed)
            monitored = val.get(self.monitor)
            if monitored is None:
                raise InputError(
                    f"train.monitor '{self.monitor}' is not a validation metric: {sorted(val)}."
                )
            improved = self._improves(monitored, state["best_value"])
            if improved:
                state.update(best_value=monitored, best_epoch=epoch, bad_epochs=0)
                state["best_state"] = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
            else:
                state["bad_epochs"] += 1
            self._step_scheduler(monitored)
            metrics = {
                "train_loss": train_loss,
                **{f"val_{k}": v for k, v in val.items()},
                "lr": self.optimizer.param_groups[0]["lr"],
                "epoch_seconds": elapsed,
            }
            state["history"].append(metrics)
            state["epoch"] = epoch
            self._save(state)
            if self.on_epoch:
                self.on_epoch(epoch, metrics)
            self._report(epoch, metrics, improved)
            if config.patience is not None and state["bad_epochs"] >= config.patience:
                self._log(f"early stop: no validation improvement for {config.patience} epochs")
                break
        self.model.load_state_dict(state["best_state"])
        mean_seconds = sum(epoch_seconds) / max(len(epoch_seconds), 1)
        return FitResult(
            state["best_epoch"],
            state["epoch"],
            mean_seconds,
            state["history"],
            self.micro_batch_size,
        )

    def close(self) -> None:
        """Drop the DDP wrapper while the process group is still alive.

        The wrapper's C++ reducer holds the group. Freed last, it would destroy the group with the
        GIL held while gloo's worker threads wait for the GIL to free finished work: a deadlock at
        exit that hung one ``torchrun`` rank in about one run in five.
        """
        if self.network is not self.model:
            self.network = self.model
            gc.collect()  # the wrapper sits in reference cycles (its hooks hold it)

    def evaluate(self, split: str) -> dict[str, float]:
        """The task's metrics of ``split``, accumulated over the whole split."""
        return self.predict_split(split, collect=False)[0].compute()

    @torch.no_grad()
    def predict_split(
        self, split: str, collect: bool = True
    ) -> tuple[SplitMetrics, list[Any] | None]:
        """The accumulated metrics of ``split`` and, if ``collect``, the task's prediction of
        each batch (on the CPU), in order.

        Without ``collect`` and under torchrun, each process scores its share of the windows and
        the sums are added across processes (every rank must call it); with ``collect`` the
        calling process scores the whole split alone.
        """
        self.model.eval()
        metrics = self.task.new_metrics()
        outputs = []
        shard = self.dist if not collect else distributed.SINGLE
        for batch in self.task.batches(
            split,
            self.eval_batch_size,
            rank=shard.rank,
            world_size=shard.world_size,
            limit=self.config.limit_batches,
        ):
            batch = batch.to(self.device)
            with self._autocast():
                output = self.model(batch.inputs)
            prediction = self.task.predict(_as_float(output), batch, split)
            self.task.update_metrics(metrics, prediction, batch)
            if collect:
                outputs.append(_to_cpu(prediction))
        if shard.enabled:
            metrics.load_state(distributed.all_reduce_sum(metrics.state(), shard))
        return metrics, (outputs if collect else None)

    # ------------------------------------------------------------------ internals
    def _initial_state(self, resume: bool) -> dict[str, Any]:
        path = self.run_dir / CHECKPOINT
        if resume:
            if not path.is_file():
                raise InputError(f"Cannot resume: no checkpoint at {path}.")
            saved = load_checkpoint(path)
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            if self.scheduler is not None and saved.get("scheduler"):
                self.scheduler.load_state_dict(saved["scheduler"])
            if self.warmup is not None:
                if saved.get("warmup") is not None:
                    self.warmup.load_state_dict(saved["warmup"])
                else:  # written when the warm-up was no scheduler: the saved rates are unwarmed
                    per_epoch = self.task.num_batches(
                        "train", self.config.batch_size, self.dist.world_size
                    )
                    if self.config.limit_batches is not None:
                        per_epoch = min(per_epoch, self.config.limit_batches)
                    self.warmup.resume_at(saved["epoch"] * per_epoch)
            torch.set_rng_state(saved["rng"])
            if torch.cuda.is_available() and saved.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
            self._log(f"resuming after epoch {saved['epoch']} from {path}")
            return saved["trainer"] | {"epoch": saved["epoch"]}
        torch.manual_seed(self.config.seed)
        return {
            "epoch": 0,
            "best_value": -math.inf if self.maximize else math.inf,
            "best_epoch": 0,
            "bad_epochs": 0,
            "best_state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "history": [],
            "epoch_seconds": [],
        }

    def _save(self, state: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        trainer_state = {k: v for k, v in state.items() if k != "epoch"}
        save_checkpoint(
            self.run_dir / CHECKPOINT,
            {
                "epoch": state["epoch"],
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "warmup": self.warmup.state_dict() if self.warmup is not None else None,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "trainer": trainer_state,
            },
        )

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.config.amp == "none":
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.config.amp]

    def _autocast(self):
        dtype = self._amp_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=dtype)

    def _train_epoch(self, epoch: int) -> float:
        config = self.config
        self.model.train()
        total = self.task.num_batches("train", config.batch_size, self.dist.world_size)
        if config.limit_batches is not None:
            total = min(total, config.limit_batches)
        batches = self.task.batches(
            "train",
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            epoch=epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            limit=config.limit_batches,
        )
        loss_sum, count = 0.0, 0
        with progress(total, f"epoch {epoch}/{config.epochs}", self.quiet) as bar:
            for number, batch in enumerate(batches, start=1):
                batch = batch.to(self.device)
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._accumulate_gradients(batch)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"The training loss became {loss.item()} at epoch {epoch}, batch {number}. "
                        "Lower the learning rate (--lr), keep gradient clipping on "
                        "(train.clip_grad_norm) or check the input data for extreme values."
                    )
                if config.clip_grad_norm is not None:
                    self._scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad_norm)
                scale = self._scaler.get_scale()
                self._scaler.step(self.optimizer)
                self._scaler.update()
                # A float16 step that overflowed was skipped (the scale dropped): no warm-up step.
                if self.warmup is not None and self._scaler.get_scale() >= scale:
                    self.warmup.step()  # the rate of the next step
                loss_sum += loss.item()
                count += 1
                bar.set_postfix(loss=f"{loss_sum / count:.4f}")
                bar.update(1)
        totals = torch.tensor([loss_sum, float(count)], dtype=torch.float64)
        loss_sum, count = distributed.all_reduce_sum(totals, self.dist).tolist()
        return loss_sum / max(count, 1)

    def _accumulate_gradients(self, batch: Batch) -> torch.Tensor:
        """Forward and backward one batch, in micro-batches if configured; returns its loss.

        Each micro-batch back-propagates its loss sum divided by the weight of the whole batch
        (over every DDP rank), so the gradients add up to those of one full-batch loss exactly,
        however the batch is cut and however many processes share it.
        """
        size = self.micro_batch_size
        parts = batch.split(size) if size and size < len(batch) else [batch]
        total = torch.zeros((), device=self.device)
        normalizer = None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            # Under DDP, synchronise gradients once, after the last micro-batch.
            sync = (
                contextlib.nullcontext()
                if last or self.network is self.model
                else self.network.no_sync()
            )
            with sync:
                with self._autocast():
                    output = self.network(part.inputs)
                output = _as_float(output)
                if normalizer is None:
                    normalizer = self._normalizer(self.task.loss_weight(batch, output))
                loss = self.task.loss(output, part).total / normalizer
                if not torch.isfinite(loss):
                    return loss
                self._scaler.scale(loss).backward()
            total = total + loss.detach()
        return total

    def _fitting_micro_batch(self) -> int | None:
        """The largest micro-batch within ``train.memory_budget`` (see `stgraph.training.memory`);
        None for whole batches. A model with batch normalisation keeps whole batches: its
        statistics, unlike its gradients, would change with the cut."""
        batch_norm = torch.nn.modules.batchnorm._BatchNorm
        if self.budget is None or any(isinstance(m, batch_norm) for m in self.model.modules()):
            return None
        batch = next(iter(self.task.batches("train", self.config.batch_size, limit=1)))
        self.model.train()

        def step(part: Batch) -> torch.Tensor:
            with self._autocast():
                output = self.model(part.inputs)
            return self.task.loss(_as_float(output), part).total

        size, per_sample = fitting_micro_batch(
            batch.to(self.device), step, self.model, self.device, self.budget
        )
        self._log(
            f"micro-batches of {size} {self.task.sample_noun} (about {per_sample / 1e6:.1f} MB "
            f"each within train.memory_budget)"
        )
        return size if size < len(batch) else None

    def _normalizer(self, weight: torch.Tensor) -> torch.Tensor:
        """The whole batch's loss weight, added over the ranks and divided by their number
        (DDP averages the ranks' gradients)."""
        if not self.dist.enabled:
            return weight.clamp_min(1)
        summed = distributed.all_reduce_sum(weight.detach().double().clone(), self.dist)
        return (summed / self.dist.world_size).clamp_min(1 / self.dist.world_size).float()

    def _improves(self, value: float, best: float) -> bool:
        delta = self.config.min_delta
        return value > best + delta if self.maximize else value < best - delta

    def _step_scheduler(self, monitored: float) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            step = functools.partial(self.scheduler.step, monitored)
        else:
            step = self.scheduler.step
        if self.warmup is not None:
            self.warmup.step_epoch_scheduler(step)  # on the scheduled, not the warmed, rates
        else:
            step()

    def _report(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        monitor = f"val_{self.monitor}"
        remaining = (self.config.epochs - epoch) * metrics["epoch_seconds"]
        self._log(
            f"epoch {epoch}/{self.config.epochs}  train_loss {metrics['train_loss']:.4f}  "
            f"{monitor} {metrics[monitor]:.4f}{' *' if improved else ''}  "
            f"{metrics['epoch_seconds']:.1f}s  (at most {remaining:.0f}s left)"
        )

    def _log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def _as_float(output: Any) -> Any:
    """A model's output in float32 (mixed precision computes in half precision)."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if dataclasses.is_dataclass(output):  # e.g. location and category scores
        fields = {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
        return dataclasses.replace(output, **{k: _as_float(v) for k, v in fields.items()})
    return type(output)(_as_float(o) for o in output) if isinstance(output, tuple) else output


def _to_cpu(prediction: Any) -> Any:
    return prediction.cpu() if isinstance(prediction, torch.Tensor) else prediction
