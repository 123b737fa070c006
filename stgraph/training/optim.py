"""The optimiser side of training: optimisers and LR schedulers by name, parameter groups with
their own learning rates, and the device."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch

from stgraph.errors import InputError
from stgraph.training.config import TrainConfig
from stgraph.training.warmup import LinearWarmup

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
SCHEDULERS = {
    "step": torch.optim.lr_scheduler.StepLR,
    "multistep": torch.optim.lr_scheduler.MultiStepLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}


def parameter_groups(
    model: torch.nn.Module, lr: float, scales: dict[str, float]
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: a parameter whose name is, or starts with, a key of
    ``scales`` (the longest such key) trains at ``lr * scale``; the rest form the first group,
    at ``lr`` (the rate the history logs). Schedulers then scale every group alike."""
    for prefix, scale in scales.items():
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
            raise InputError(
                f"train.lr_scales['{prefix}'] must be a positive number, got {scale!r}."
            )
    groups: dict[str | None, list[torch.nn.Parameter]] = {None: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            keys = [k for k in scales if name == k or name.startswith(k + ".")]
            groups.setdefault(max(keys, key=len, default=None), []).append(param)
    unknown = sorted(set(scales) - set(groups))
    if unknown:
        tops = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
        raise InputError(
            f"train.lr_scales names {unknown}, which match no parameter of the model "
            f"(its parameter names start with {tops})."
        )
    return [
        {"params": params, "lr": lr * (scales[key] if key else 1.0)}
        for key, params in groups.items()
        if params
    ]


def build_scheduler(name: str, optimizer: Any, params: dict[str, Any]) -> Any:
    """The LR scheduler, its parameters checked now: torch reads most of them only at the first
    ``step()``, after a whole epoch of training."""
    scheduler = SCHEDULERS[name]
    defaults = inspect.signature(scheduler).parameters
    for key, value in params.items():
        default = defaults[key].default if key in defaults else None
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(
                f"train.scheduler_params.{key} of the {name} scheduler must be a number, "
                f"got {value!r}."
            )
    try:
        # Two steps of a copy on a throwaway optimizer reach the arithmetic on every parameter,
        # the required ones (cosine's T_max) included, which have no default to check against.
        probe = scheduler(torch.optim.SGD([torch.zeros(1)], lr=1.0), **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(2):
                probe.step(0.0) if name == "plateau" else probe.step()
        return scheduler(optimizer, **params)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"train.scheduler_params for the {name} scheduler: {exc}") from None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device is '{name}' but CUDA is not available on this machine.")
    return device


def check_config(config: TrainConfig) -> None:
    """Reject optimisation settings that cannot work, before any data is read."""
    if config.warmup_steps < 0:
        raise InputError(f"train.warmup_steps must be 0 or more, got {config.warmup_steps}.")
    if config.optimizer not in OPTIMIZERS:
        raise InputError(
            f"train.optimizer must be one of {sorted(OPTIMIZERS)}, got '{config.optimizer}'."
        )
    if config.scheduler != "none" and config.scheduler not in SCHEDULERS:
        raise InputError(
            f"train.scheduler must be none or one of {sorted(SCHEDULERS)}, "
            f"got '{config.scheduler}'."
        )


def build_optimization(
    model: torch.nn.Module, config: TrainConfig, maximize: bool
) -> tuple[torch.optim.Optimizer, Any, LinearWarmup | None]:
    """The optimiser, its epoch scheduler (None: constant) and its per-step warm-up (None: off).
    ``maximize``: the monitored metric is maximised (a plateau scheduler follows it)."""
    optimizer = OPTIMIZERS[config.optimizer](
        parameter_groups(model, config.lr, config.lr_scales),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scheduler = None
    if config.scheduler != "none":
        params = dict(config.scheduler_params)
        if config.scheduler == "plateau":
            params.setdefault("mode", "max" if maximize else "min")
        scheduler = build_scheduler(config.scheduler, optimizer, params)
    # 0 and 1 warm-up steps: every step at the scheduled rate
    warmup = LinearWarmup(optimizer, config.warmup_steps) if config.warmup_steps > 1 else None
    return optimizer, scheduler, warmup
