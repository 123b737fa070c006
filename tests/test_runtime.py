"""Thread count, wait policy and the return of freed memory (`stgraph.runtime`)."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from stgraph import runtime


def test_cgroup_quota_rounds_up_and_max_means_none(tmp_path):
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # 1.5 CPUs
    assert runtime._cgroup_quota(limit) == 2
    limit.write_text("max 100000\n")
    assert runtime._cgroup_quota(limit) is None
    assert runtime._cgroup_quota(tmp_path / "absent") is None


def test_default_threads_follow_affinity_quota_and_local_ranks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert runtime.default_threads() == 8
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 3)  # a container of 3 CPUs
    assert runtime.default_threads() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun, 2 processes on this machine
    assert runtime.default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert runtime.default_threads() == 1  # never 0


def test_configure_threads_explicit_then_environment_then_default(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(runtime, "default_threads", lambda: 1)
        assert runtime.configure_threads(2) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert runtime.configure_threads() == 2  # the environment's choice is left alone
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert runtime.configure_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_stgraph_makes_threads_wait_passively_unless_configured(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, stgraph; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# A child process allocates and frees 4 MiB (glibc then raises its mmap threshold to 4 MiB), then
# allocates 2 MiB and says whether that block lies in the brk heap, whose pages stay with the
# process when freed, or in its own mapping, which goes back to the system.
_HEAP_PROBE = """
import sys
if sys.argv[1] == "stgraph":
    import stgraph
import torch

def in_heap(address):
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            low, high = (int(part, 16) for part in line.split()[0].split("-"))
            if low <= address < high:
                return True
    return False

first = torch.empty(4 << 20, dtype=torch.uint8)
del first
second = torch.empty(2 << 20, dtype=torch.uint8)
print("heap" if in_heap(second.data_ptr()) else "mapped")
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the mmap threshold is glibc's",
)
@pytest.mark.parametrize(
    "importer, preset, expected",
    [
        ("torch", None, "heap"),  # glibc's own behaviour: the threshold followed the freed 4 MiB
        ("stgraph", None, "mapped"),  # fixed at 1 MiB by `import stgraph`
        ("stgraph", str(32 << 20), "heap"),  # the user's setting is left alone
    ],
)
def test_importing_stgraph_returns_freed_tensor_memory_unless_configured(
    importer, preset, expected
):
    env = {k: v for k, v in os.environ.items() if k != runtime.MMAP_THRESHOLD}
    if preset:
        env[runtime.MMAP_THRESHOLD] = preset
    done = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, importer], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_return_freed_memory_defers_to_the_environment(monkeypatch):
    monkeypatch.setenv(runtime.MMAP_THRESHOLD, str(1 << 20))
    assert runtime.return_freed_memory() is False
