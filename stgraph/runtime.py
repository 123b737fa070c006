"""How torch's CPU threads are sized and how they wait: decided once per process, before work.

Two defaults make stgraph degrade gracefully on a machine that other jobs share (a cron host, a
workstation, a CI runner):

- **Threads wait passively** (``OMP_WAIT_POLICY=PASSIVE``, set by ``import stgraph`` unless the
  environment already sets it). By default an OpenMP thread that finishes its share of a parallel
  loop spins for its partners; when a partner has been descheduled by another job, it spins for a
  whole time slice and a step takes several times its fair share (measured: a 2-thread STTN step
  6.5 s alone, 24-38 s beside one CPU-bound 2-thread neighbour, 10-12 s with passive waiting).
  The policy is read when torch loads its OpenMP runtime, so it only applies if ``stgraph`` is
  imported before ``torch``.
- **As many threads as this process may use**: the CPUs of its affinity mask and of its cgroup
  quota (a container limited to 2 CPUs on a 64-core host gets 2, not torch's 32), divided among
  the ``torchrun`` processes of the machine. ``train.threads`` / ``--threads`` and
  ``OMP_NUM_THREADS`` override it.
- **Freed tensor memory goes back to the system** (glibc only; set by ``import stgraph`` unless
  ``MALLOC_MMAP_THRESHOLD_`` is set). glibc raises its mmap threshold each time a large block is
  freed, up to 32 MiB, after which tensor buffers come from the heap and their pages stay with the
  process when freed: a long run's resident memory climbs above what one step holds. A fixed
  threshold also switches that adjustment off (figures: docs/results/performance.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> None:
    """Make OpenMP threads sleep rather than spin while they wait (unless already configured)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


MMAP_THRESHOLD = "MALLOC_MMAP_THRESHOLD_"
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Serve allocations of ``threshold`` bytes or more by ``mmap`` (returned to the system when
    freed), unless ``MALLOC_MMAP_THRESHOLD_`` already decides it. Returns whether it was set:
    False off glibc (macOS, musl), where the allocator is left alone."""
    if os.environ.get(MMAP_THRESHOLD):
        return False
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota)) if quota else max(1, cpus)


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _cgroup_quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """The CPU quota of a cgroup v2 (``cpu.max``: "QUOTA PERIOD" or "max PERIOD"), rounded up."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return math.ceil(int(quota) / int(period))


def default_threads() -> int:
    """Threads for one process: the available CPUs shared among ``torchrun``'s local ranks."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, available_cpus() // max(1, local_ranks))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else ``OMP_NUM_THREADS`` if set
    (torch reads it itself), else `default_threads`. Returns the number in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()
