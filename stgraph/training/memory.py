"""The micro-batch size from a memory budget (``train.memory_budget``).

A batch is cut into micro-batches whose gradients add up to the batch's exactly (see
`Trainer._accumulate_gradients`); the cut changes memory and speed, not the update. Rather than
a fixed size tuned on one machine, the trainer takes the largest micro-batch whose activations
fit the budget: it measures what training steps on two parts of the first batch keep alive (a
fixed part and a per-sample part) and solves for the size. Many tiny micro-batches waste time in
per-call overhead; one huge one can exhaust a shared machine's memory.

Measuring: on CUDA, the peak of the caching allocator over a forward and backward pass; on CPU,
where torch keeps no allocator statistics, the tensors the forward pass saves for the backward
(unique storages, parameters excluded) times `CPU_PEAK_FACTOR`, for the gradients and temporaries
of the backward pass. The trial steps run on a copy of the random state and leave no gradients.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

import torch

from stgraph.errors import InputError
from stgraph.tasks.base import Batch

# Beyond a few hundred MB of activations a larger CPU micro-batch is no faster (it falls out of
# cache), and it takes memory other jobs on the machine may need.
CPU_AUTO_CAP = 2 * 1024**3
# A CPU training step's peak resident memory grows by about 4x the bytes its forward pass saves
# (measured on STTN, los-loop: micro-batches of 2 and 16 windows save 106 and 845 MB; the
# process's peak RSS grew by 0.42 and 3.43 GB).
CPU_PEAK_FACTOR = 4
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}


def parse_budget(text: str | None) -> int | None:
    """``"auto"`` -> -1 (decided per device), ``"none"``/None -> None (whole batches), else bytes
    (``"512MB"``, ``"2GiB"``, ``"1.5GB"``)."""
    if text is None or str(text).strip().lower() == "none":
        return None
    value = str(text).strip().upper()
    if value == "AUTO":
        return -1
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([KMG]I?B|B?)", value)
    if not match or float(match[1]) <= 0:
        raise InputError(
            f"train.memory_budget must be auto, none or a size such as 512MB or 2GiB, got '{text}'."
        )
    return int(float(match[1]) * _UNITS[match[2]])


def auto_budget(device: torch.device) -> int:
    """Half the free memory of a GPU; on CPU a quarter of the available memory, at most 2 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 * CPU_AUTO_CAP
    return min(available // 4, CPU_AUTO_CAP)


def step_bytes(
    step: Callable[[], torch.Tensor], model: torch.nn.Module, device: torch.device
) -> int:
    """Bytes one training step keeps alive beyond the model (see the module's docstring).
    ``step`` runs the forward pass and returns the loss."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step().backward()
            used = torch.cuda.max_memory_allocated(device) - before
        else:
            used = CPU_PEAK_FACTOR * _saved_bytes(step, model)
    model.zero_grad(set_to_none=True)
    return max(int(used), 0)


def _saved_bytes(step: Callable[[], torch.Tensor], model: torch.nn.Module) -> int:
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()  # no backward: the graph is dropped with the loss
    return sum(storages.values())


def largest_fitting(fixed: int, per_sample: int, budget: int, batch_size: int) -> int:
    """The micro-batch size: the largest ``m <= batch_size`` with ``fixed + m * per_sample <=
    budget`` (at least 1), then evened out so that the batch splits into equal parts."""
    if per_sample <= 0:
        fitting = batch_size
    else:
        fitting = max(1, min(batch_size, (budget - fixed) // per_sample))
    parts = math.ceil(batch_size / fitting)
    return math.ceil(batch_size / parts)


def fitting_micro_batch(
    batch: Batch,
    loss_of: Callable[[Batch], torch.Tensor],
    model: torch.nn.Module,
    device: torch.device,
    budget: int,
) -> tuple[int, int]:
    """The micro-batch size for batches like ``batch`` within ``budget`` bytes (-1: `auto_budget`),
    and the measured bytes per sample. ``loss_of(part)`` runs the forward pass of a part."""
    if budget < 0:
        budget = auto_budget(device)
    # Two parts of an eighth and a quarter of the batch (a tiny part under-counts: broadcasting
    # and per-call overheads do not grow linearly from one sample to two). A task may cut a batch
    # only at some boundaries (whole users): the parts' real sizes count.
    small = max(2, len(batch) // 8)
    measured = {}
    for part in (batch.split(small)[0], batch.split(2 * small)[0]):
        measured[len(part)] = step_bytes(lambda part=part: loss_of(part), model, device)
    (n1, b1), (n2, b2) = min(measured.items()), max(measured.items())
    per_sample = (b2 - b1) // (n2 - n1) if n2 > n1 else b1 // n1
    return largest_fitting(b1 - n1 * per_sample, per_sample, budget, len(batch)), per_sample
