"""Fakes of the Runner and the test data source, for unit tests of the profiling use case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .runner import RunnerError, RunResult, RunSpec, Sample
from .spec import TestData
from .testdata import TestDataError, safe_relative


def result(
    *,
    exit_code: int | None = 0,
    wall: float = 1.0,
    peak: int = 64 << 20,
    cpu: float = 0.5,
    oom: bool = False,
    timed_out: bool = False,
    startup: float = 0.2,
) -> RunResult:
    """A run result with a flat time series at 10 Hz matching its totals."""
    cores = cpu / wall if wall else 0.0
    samples = [
        Sample(t=i / 10, memory_bytes=peak, cpu_cores=cores) for i in range(int(wall * 10) + 1)
    ]
    return RunResult(
        exit_code=exit_code,
        oom_killed=oom,
        timed_out=timed_out,
        wall_seconds=wall,
        startup_seconds=startup,
        peak_memory_bytes=peak,
        cpu_seconds=cpu,
        cpu_user_seconds=cpu * 0.9,
        cpu_system_seconds=cpu * 0.1,
        samples=samples,
    )


class FakeRunner:
    """Answers each run with `script(spec)`; records what it was asked to run."""

    def __init__(
        self,
        script: Callable[[RunSpec], RunResult] | None = None,
        *,
        native: set[str] | None = None,
        emulated: set[str] | None = None,
        missing: set[str] | None = None,
        gpu: bool = False,
    ) -> None:
        self.script = script or (lambda spec: result())
        self.native = {"linux/amd64"} if native is None else native
        self.emulated = emulated or set()
        self.missing = missing or set()
        self.gpu = gpu
        self.runs: list[RunSpec] = []
        self.together: list[tuple[list[RunSpec], int, float]] = []
        self.prepared: list[tuple[str, str | None]] = []

    def native_architectures(self) -> set[str]:
        return self.native

    def emulated_architectures(self) -> set[str]:
        return self.emulated

    def has_gpu(self) -> bool:
        return self.gpu

    async def prepare(self, image: str, platform: str | None) -> None:
        if image in self.missing:
            raise RunnerError(f"cannot pull {image}: not found")
        self.prepared.append((image, platform))

    async def run(self, spec: RunSpec) -> RunResult:
        self.runs.append(spec)
        return self.script(spec)  # a script may raise RunnerError or RunnerUnavailable

    async def run_together(
        self, specs: list[RunSpec], *, memory_bytes: int, cpus: float
    ) -> list[RunResult]:
        self.together.append((specs, memory_bytes, cpus))
        return [self.script(spec) for spec in specs]

    async def cleanup(self) -> int:
        return 0


class FakeDataSource:
    """Test data from memory: `{bucket: {key: bytes}}`; unknown buckets are TestDataError."""

    def __init__(self, buckets: dict[str, dict[str, bytes]] | None = None) -> None:
        self.buckets = buckets or {}

    async def fetch(self, data: TestData, dest: Path) -> int:
        objects = self.buckets.get(data.bucket)
        if not objects:
            raise TestDataError(f"sage://{data.bucket}/{data.prefix} does not exist")
        total = 0
        for key, body in objects.items():
            if key.startswith(data.prefix):
                target = dest / safe_relative(key[len(data.prefix) :])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                total += len(body)
        return total
