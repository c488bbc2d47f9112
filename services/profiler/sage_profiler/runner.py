"""What the profiler asks of a place that runs containers, and what it gets back.

`runner_docker.py` and `runner_k8s.py` implement it; a runner reports what happened, and the
conclusions are drawn in `conclude.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

# Who a container under test runs as when nothing else is asked: nobody, never the image's user.
UNPRIVILEGED_USER = "65534:65534"


@dataclass(frozen=True)
class RunSpec:
    """One container under test, with every restriction it runs under."""

    image: str
    command: list[str] | None = None  # replaces the image's entrypoint when given
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    platform: str | None = None  # set only when the engine must emulate another architecture
    architecture: str | None = None  # the OCI platform the run targets (linux/arm64), always set
    data_dir: Path | None = None  # mounted read-only at `data_mount`
    data_mount: str = "/data"
    timeout_seconds: float = 300.0
    memory_bytes: int = 1 << 30
    cpus: float = 1.0
    pids_limit: int = 256
    tmpfs_bytes: int = 64 << 20
    user: str | None = UNPRIVILEGED_USER  # numeric uid:gid; None: the image's own (may be root)
    gpu: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def within(self, memory_bytes: int, cpus: float) -> RunSpec:
        """This run under a shared ceiling: none of its own limits above the ceiling's."""
        memory_bytes, cpus = min(self.memory_bytes, memory_bytes), min(self.cpus, cpus)
        return replace(self, memory_bytes=memory_bytes, cpus=cpus)


@dataclass(frozen=True)
class Sample:
    """One point of the series: seconds since start, memory now, CPU cores over the interval."""

    t: float
    memory_bytes: int
    cpu_cores: float
    gpu_memory_bytes: int | None = None
    gpu_utilization: float | None = None


@dataclass
class RunResult:
    """What one container did: its exit, and its resource use measured from its cgroup."""

    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    wall_seconds: float
    startup_seconds: float
    peak_memory_bytes: int
    cpu_seconds: float
    cpu_user_seconds: float
    cpu_system_seconds: float
    throttled_seconds: float = 0.0
    nr_throttled: int = 0
    gpu_memory_bytes: int | None = None
    gpu_utilization: float | None = None
    samples: list[Sample] = field(default_factory=list)
    sample_interval: float = 0.1
    log_tail: list[str] = field(default_factory=list)
    error: str | None = None  # the runner could not run it at all (not the app's failure)
    # Where the memory and CPU figures came from; "none": no sample came, they are not measured.
    measured_by: str = "cgroup"

    @property
    def cpu_cores(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class RunnerError(Exception):
    """The runner cannot run this (image missing or for another platform): the profile fails."""


class RunnerUnavailable(RunnerError):
    """The engine itself failed or cannot be reached: worth retrying the whole profile later."""


class Runner(Protocol):
    """Runs containers under test and measures them."""

    def native_architectures(self) -> set[str]:
        """Architectures (`linux/amd64`) this runner runs without emulation."""

    def emulated_architectures(self) -> set[str]:
        """Architectures it can run under emulation (timings then don't count)."""

    def has_gpu(self) -> bool:
        """Whether containers can be given an NVIDIA GPU (and its use measured)."""

    async def prepare(self, image: str, platform: str | None) -> None:
        """Make the image available (pull it) before any timed run."""

    async def run(self, spec: RunSpec) -> RunResult:
        """Run one container to its end (or its timeout) and measure it."""

    async def run_together(
        self, specs: list[RunSpec], *, memory_bytes: int, cpus: float
    ) -> list[RunResult]:
        """Start the containers side by side under one shared ceiling; one result each, in order."""

    async def cleanup(self) -> int:
        """Remove containers and cgroups an earlier, killed profiler left; return how many."""
