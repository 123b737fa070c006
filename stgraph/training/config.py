"""Training settings."""

from __future__ import annotations

from dataclasses import dataclass

from stgraph.config import option


@dataclass
class TrainConfig:
    epochs: int = option(100, "maximum number of epochs")
    batch_size: int = option(64, "windows per training batch")
    eval_batch_size: int | None = option(
        None, "windows per evaluation batch (default: 2 x batch_size)"
    )
    lr: float = option(1e-3, "learning rate")
    lr_scales: dict = option(
        {}, "learning-rate multipliers by parameter-name prefix, e.g. {node_readout: 3}"
    )
    optimizer: str = option("adam", "adam | adamw | rmsprop")
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adamw)")
    warmup_steps: int = option(
        0, "raise the learning rate linearly from 0 over the first N optimizer steps"
    )
    scheduler: str = option("none", "none | step | multistep | cosine | plateau")
    scheduler_params: dict = option({}, "keyword arguments of the torch LR scheduler")
    clip_grad_norm: float | None = option(5.0, "clip the gradient norm to this value (None: off)")
    patience: int | None = option(10, "stop after this many epochs without validation improvement")
    monitor: str | None = option(
        None, "validation metric for early stopping and model selection (default: mae_avgH)"
    )
    min_delta: float = option(0.0, "smallest decrease of the monitored metric that counts")
    micro_batch_size: int | None = option(
        None,
        "split each batch into micro-batches of this size (same gradient, less memory); "
        "default: the largest that fits train.memory_budget",
    )
    memory_budget: str = option(
        "auto",
        "activation memory a micro-batch may take: a size (512MB, 2GiB), auto (CPU: a quarter "
        "of the available memory, at most 2 GiB; GPU: half the free memory) or none (whole "
        "batches)",
    )
    seed: int = option(0, "seed of weights, shuffling and dropout")
    threads: int | None = option(
        None,
        "CPU threads for torch (default: the CPUs this process may use, shared among torchrun "
        "ranks; OMP_NUM_THREADS overrides the default)",
    )
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    amp: str = option("none", "mixed precision on CUDA: none | bf16 | fp16")
    limit_batches: int | None = option(
        None, "at most this many batches per epoch and split (smoke runs)"
    )
