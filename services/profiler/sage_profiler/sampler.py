"""A thread that samples one cgroup at a fixed rate for the time series (plots, CPU peaks).

Totals (peak memory, CPU seconds, throttling) never come from here: they are read from the run's
cgroup after the container exited.
"""

from __future__ import annotations

import threading
import time

from .cgroup import Cgroups
from .gpu import GpuMonitor
from .runner import Sample


class Sampler:
    """Samples `rel` (the run's parent cgroup) every `1/hz` seconds until stopped."""

    def __init__(
        self, cgroups: Cgroups, rel: str, *, hz: float = 10.0, gpu: GpuMonitor | None = None
    ) -> None:
        self.cgroups = cgroups
        self.rel = rel
        self.interval = 1.0 / max(hz, 1.0)
        self.gpu = gpu
        self.samples: list[Sample] = []
        self.gpu_peak_bytes: int | None = None
        self.gpu_util_max: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sampler:{rel}", daemon=True)
        self._t0 = 0.0
        self._last: tuple[float, float] | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (busy machine): skip ahead rather than burst
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def sample_once(self) -> None:
        now = time.monotonic()
        try:
            reading = self.cgroups.reading(self.rel)
        except (OSError, ValueError):
            return  # not made yet, or already gone
        cores = 0.0
        if self._last is not None and now > self._last[0]:
            cores = max(0.0, (reading.cpu_seconds - self._last[1]) / (now - self._last[0]))
        self._last = (now, reading.cpu_seconds)
        gpu_mem = gpu_util = None
        if self.gpu is not None:
            got = self.gpu.read(set(self.cgroups.procs(self.rel)))
            if got is not None:
                gpu_mem, gpu_util = got.memory_bytes, got.utilization
                self.gpu_peak_bytes = max(self.gpu_peak_bytes or 0, gpu_mem)
                self.gpu_util_max = max(self.gpu_util_max or 0.0, gpu_util)
        self.samples.append(
            Sample(
                round(now - self._t0, 3), reading.memory_bytes, round(cores, 3), gpu_mem, gpu_util
            )
        )
