"""Thread count and wait policy (`stgraph.runtime`)."""

import os
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
