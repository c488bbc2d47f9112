"""GPU memory and utilisation of a container's processes through NVML, when a GPU is present.

NVML (`nvidia-ml-py`, module `pynvml`) is optional: without it, or without a driver, `open_gpu()`
answers None and runs carry no GPU figures.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    memory_bytes: int  # used by the given processes, summed over devices
    utilization: float  # percent, the busiest device the processes use


class GpuMonitor:
    """Reads NVML for a set of host pids; thread-safe, one instance per process."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        count = nvml.nvmlDeviceGetCount()
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._last_seen: dict[int, int] = {}

    @property
    def device_count(self) -> int:
        return len(self._handles)

    def read(self, pids: set[int]) -> GpuReading | None:
        """What `pids` use now; None when none of them holds a GPU context."""
        if not pids:
            return None
        memory = 0
        utilization = 0.0
        found = False
        with self._lock:
            for index, handle in enumerate(self._handles):
                used = [p for p in _processes(self._nvml, handle) if p.pid in pids]
                if not used:
                    continue
                found = True
                memory += sum(int(p.usedGpuMemory or 0) for p in used)
                utilization = max(utilization, self._utilization(index, handle, pids))
        return GpuReading(memory, utilization) if found else None

    def _utilization(self, index: int, handle: Any, pids: set[int]) -> float:
        nvml = self._nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(handle, self._last_seen.get(index, 0))
        except Exception:  # noqa: BLE001 - NVML raises its own error types; fall back to the device
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        mine = [s for s in samples if s.pid in pids]
        if samples:
            self._last_seen[index] = max(s.timeStamp for s in samples)
        return float(max((s.smUtil for s in mine), default=0))


def _processes(nvml: Any, handle: Any) -> list[Any]:
    procs: list[Any] = []
    for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            procs.extend(getattr(nvml, name)(handle))
        except Exception:  # noqa: BLE001, S112 - not every driver answers both
            continue
    return procs


@functools.cache
def open_gpu() -> GpuMonitor | None:
    """The process-wide monitor, or None when NVML or a GPU is missing (asked once)."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        log.info("no NVML bindings installed (nvidia-ml-py): GPU use is not measured")
        return None
    try:
        pynvml.nvmlInit()
        monitor = GpuMonitor(pynvml)
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.info("NVML unavailable (%s): GPU use is not measured", type(exc).__name__)
        return None
    return monitor if monitor.device_count else None


def gpu_unavailable_reason() -> str | None:
    """Why GPU use cannot be measured here, or None when it can."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return "NVML bindings (nvidia-ml-py) are not installed"
    if open_gpu() is None:
        return "NVML found no NVIDIA driver or device"
    return None
