"""The NVML reader over a fake NVML module (the real one is tested on GPU machines)."""

from __future__ import annotations

from types import SimpleNamespace

from sage_profiler.gpu import GpuMonitor


class FakeNvml:
    def __init__(self) -> None:
        self.procs = {
            0: [
                SimpleNamespace(pid=10, usedGpuMemory=300 << 20),
                SimpleNamespace(pid=99, usedGpuMemory=1 << 30),
            ],
            1: [SimpleNamespace(pid=11, usedGpuMemory=100 << 20)],
        }

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, h: int):
        return self.procs[h]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int):
        raise RuntimeError("not supported")

    def nvmlDeviceGetProcessUtilization(self, h: int, since: int):
        return (
            [
                SimpleNamespace(pid=10, smUtil=40, timeStamp=5),
                SimpleNamespace(pid=99, smUtil=90, timeStamp=6),
            ]
            if h == 0
            else []
        )


def test_only_the_containers_processes_count() -> None:
    reading = GpuMonitor(FakeNvml()).read({10, 11})
    assert reading is not None
    assert reading.memory_bytes == 400 << 20
    assert reading.utilization == 40.0  # pid 99 is someone else's


def test_processes_without_a_gpu_context_read_as_none() -> None:
    monitor = GpuMonitor(FakeNvml())
    assert monitor.read({12345}) is None
    assert monitor.read(set()) is None
