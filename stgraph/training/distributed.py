"""Multi-process training through ``torchrun`` (gloo on CPU, NCCL on GPU).

``torchrun --nproc_per_node=N -m stgraph fit ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; each
process then trains on every N-th window of each shuffled epoch (``batch_size`` is per process),
gradients are averaged by DistributedDataParallel, validation metrics are summed across processes
before early stopping decides (so every rank decides alike), and only rank 0 talks to MLflow and
writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Context()


def from_environment() -> Context:
    """The process group ``torchrun`` describes, initialised; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return Context(rank, world_size, local_rank)


def all_reduce_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(value: Any, context: Context) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(context: Context) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
