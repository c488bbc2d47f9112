"""GPU measurement through NVML on a machine with an NVIDIA GPU; skipped, with why, elsewhere.

A process takes GPU memory through the CUDA driver API (libcuda via ctypes, no toolkit needed);
the sampler, pointed at a cgroup that holds that process, must see the memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sage_profiler.cgroup import CgroupV2
from sage_profiler.gpu import gpu_unavailable_reason, open_gpu
from sage_profiler.sampler import Sampler

MiB = 1 << 20
HOLD_MIB = 256

CUDA_HOLDER = f"""
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), {HOLD_MIB} << 20) == 0
print("ready", flush=True)
sys.stdin.read()
"""


def _require_gpu() -> None:
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no NVIDIA GPU on this machine: {reason}")


def fake_cgroup(root: Path, pid: int) -> CgroupV2:
    """A v2-shaped cgroup directory whose only process is `pid` (the GPU user)."""
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    run = root / "run"
    run.mkdir()
    (run / "cgroup.procs").write_text(f"{pid}\n")
    (run / "memory.current").write_text("0\n")
    (run / "cpu.stat").write_text("usage_usec 0\n")
    return CgroupV2(root)


@pytest.mark.gpu
def test_gpu_memory_of_the_runs_processes_is_sampled(tmp_path: Path) -> None:
    _require_gpu()
    holder = subprocess.Popen(
        [sys.executable, "-c", CUDA_HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        sampler = Sampler(fake_cgroup(tmp_path / "gpu", holder.pid), "run", hz=20, gpu=open_gpu())
        deadline = time.monotonic() + 10
        while sampler.gpu_peak_bytes is None and time.monotonic() < deadline:
            sampler.sample_once()
        assert sampler.gpu_peak_bytes is not None and sampler.gpu_peak_bytes >= HOLD_MIB * MiB
        assert any(s.gpu_memory_bytes for s in sampler.samples)
        idle = Sampler(fake_cgroup(tmp_path / "idle", os.getpid()), "run", gpu=open_gpu())
        idle.sample_once()
        assert idle.gpu_peak_bytes is None  # this test process holds no GPU memory
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)
