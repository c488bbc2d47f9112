"""Profile one successful build: run its test per architecture, measure, conclude, report.

Orchestration only: containers run through a `Runner`, test data comes through a `TestDataSource`,
and the figures are turned into conclusions by `conclude`.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sage_common.appspec import Hardware
from sage_common.schemas import (
    ArchitectureOutcome,
    BuildDone,
    Concurrency,
    NodeFit,
    Period,
    ProfileDone,
    ProfileSeries,
    Recommended,
    TestRun,
)

from . import conclude
from .conclude import ArchOutcome
from .config import Config
from .runner import Runner, RunnerError, RunnerUnavailable, RunResult, RunSpec
from .spec import TestingSpec, UserRefused, ceilings
from .testdata import TestDataError, TestDataSource, staged

log = logging.getLogger(__name__)

PROFILE_NAMESPACE = uuid.UUID("5f1d7c52-8a51-4c4b-9d0e-6a0c2b9f3e11")
MAX_SERIES_POINTS = 600
DATA_MOUNT = "/data"


def profile_id_for(build_id: str) -> str:
    """One profile per build: the id is derived from the build id, so a redelivery reuses it."""
    return str(uuid.uuid5(PROFILE_NAMESPACE, build_id))


@dataclass
class Profiler:
    """What profiling needs from the outside world."""

    runner: Runner
    data: TestDataSource
    config: Config


def _platform(arch: str) -> str:
    return arch if "/" in arch else f"linux/{arch}"


def image_ref(image: str, digest: str) -> str:
    """`registry/ns/name@digest` for one architecture's image, or the tagged reference."""
    if not digest:
        return image
    repo = image.split("@", 1)[0]
    head, sep, tail = repo.rpartition(":")
    if sep and "/" not in tail:
        repo = head
    return f"{repo}@{digest}"


def targets(
    build: BuildDone, runner: Runner, config: Config
) -> tuple[list[ArchOutcome], list[ArchitectureOutcome]]:
    """Which architectures to run (native first), and which cannot run here and why."""
    native, emulated = runner.native_architectures(), runner.emulated_architectures()
    images = [(_platform(i.architecture), i.digest) for i in build.images]
    if not images and build.image:
        images = [(arch, "") for arch in sorted(native)]
    runnable: list[ArchOutcome] = []
    skipped: list[ArchitectureOutcome] = []
    for arch, digest in images:
        ref = image_ref(build.image or "", digest)
        if arch in native or (arch in emulated and config.run_emulated):
            runnable.append(ArchOutcome(arch, emulated=arch not in native, image=ref))
        else:
            skipped.append(
                ArchitectureOutcome(
                    architecture=arch, ran=False, reason="this profiler cannot run it"
                )
            )
    runnable.sort(key=lambda o: o.emulated)
    return runnable, skipped


async def profile(p: Profiler, build: BuildDone) -> ProfileDone:
    """Run, measure and judge `build` (a successful one); never raises for the app's failures."""
    cfg = p.config
    started, t0 = datetime.now(UTC), time.monotonic()
    spec, hardware = TestingSpec.read(build.testing), Hardware.read(build.hardware)
    limits = ceilings(hardware, cfg)
    runnable, arch_report = targets(build, p.runner, cfg)
    reasons: list[str] = spec.over_limits()
    wants_gpu = spec.gpu or hardware.gpu in ("required", "optional")
    try:
        user = spec.user_for(cfg)
    except UserRefused as exc:
        reasons.append(str(exc))
        arch_report += [
            ArchitectureOutcome(architecture=o.architecture, ran=False, reason=str(exc))
            for o in runnable
        ]
        runnable, user = [], cfg.run_as_user
    timeout, expected = spec.timeout_for(cfg), spec.expected_exit_code
    try:
        async with staged(p.data, spec.test_data(), cfg.work_dir) as data_dir:
            base = RunSpec(
                image="",  # each architecture's own, set in `_measure`
                command=spec.entrypoint(),
                args=spec.arguments(),
                env=spec.env | ({"SAGE_TEST_DATA": DATA_MOUNT} if data_dir is not None else {}),
                data_dir=data_dir,
                data_mount=DATA_MOUNT,
                timeout_seconds=timeout,
                memory_bytes=limits.memory_bytes,
                cpus=cfg.cpu_limit,
                pids_limit=cfg.pids_limit,
                tmpfs_bytes=cfg.tmpfs_bytes,
                user=user,
                gpu=wants_gpu and p.runner.has_gpu(),
                labels={
                    "org.sagecontinuum.app": build.app_id,
                    "org.sagecontinuum.build": build.build_id,
                },
            )
            for k, outcome in enumerate(runnable):
                try:
                    await _measure(p, spec, base, outcome, concurrency=k == 0)
                except RunnerUnavailable:
                    raise  # the engine's fault: the whole profile is retried later
                except RunnerError as exc:
                    outcome.error = str(exc)
    except TestDataError as exc:
        reasons.append(f"test data: {exc}")
        runnable = []
    runs: list[TestRun] = []
    passing: list[tuple[ArchOutcome, RunResult]] = []
    for outcome in runnable:
        arch_report.append(
            ArchitectureOutcome(
                architecture=outcome.architecture,
                ran=not outcome.error,
                emulated=outcome.emulated,
                reason=outcome.error,
            )
        )
        if outcome.error:
            reasons.append(f"{outcome.architecture}: {outcome.error}")
        for rep, result in enumerate(outcome.runs, start=1):
            why = conclude.run_failure(result, expected, limits.memory_bytes, timeout)
            runs.append(_test_run(outcome, rep, result, why))
            if why:
                reasons.append(f"{outcome.architecture} repetition {rep}: {why}")
            else:
                passing.append((outcome, result))
    if not runnable and not reasons:
        reasons.append("no architecture of the image can run here")
    if limits.memory_from == "maximum" and any(r.oom_killed for r in runs):
        reasons.append(
            f"hardware.min_memory asks for {limits.min_memory_bytes} bytes; the profiler gives "
            f"at most {limits.memory_bytes}"
        )

    passing_native = [r for o, r in passing if not o.emulated]
    recommended = conclude.recommend(passing_native, cfg)
    images_arches = [_platform(i.architecture) for i in build.images] or sorted(
        o.architecture for o in runnable
    )
    fit = conclude.node_fit(recommended, cfg.node_profiles, images_arches, wants_gpu)
    first = runnable[0] if runnable else None
    together = conclude.concurrency(first, spec.copies_for(cfg), expected, cfg, timeout)
    if together.get("tested") and not together.get("all_passed"):
        failed = together["copies"] - together["passed"]
        detail = "; ".join(f"copy {i}: {w}" for i, w in together["failures"].items())
        reasons.append(f"{failed} of {together['copies']} copies failed side by side ({detail})")
    timed = passing_native or [r for _, r in passing]
    period = conclude.period(timed, spec.period, cfg, emulated=not passing_native)
    if period.get("met") is False and not period["emulated"]:
        reasons.append(
            f"the declared period of {spec.period:g} s is shorter than the "
            f"{period['shortest_seconds']:g} s the app needs"
        )
    return ProfileDone(
        app_id=build.app_id,
        build_id=build.build_id,
        profile_id=profile_id_for(build.build_id),
        status="failed" if reasons else "passed",
        reason="; ".join(reasons)[:2000] or None,
        runs=runs,
        concurrency=Concurrency.model_validate(together).model_dump(mode="json"),
        period=Period.model_validate(period).model_dump(mode="json"),
        recommended=Recommended.model_validate(recommended).model_dump(
            mode="json", exclude_none=True
        ),
        node_fit={k: NodeFit.model_validate(v).model_dump(mode="json") for k, v in fit.items()},
        architectures=arch_report,
        series=[_series(o.architecture, 1, o.runs[0]) for o in runnable if o.runs],
        started_at=started,
        duration_seconds=round(time.monotonic() - t0, 3),
        ceilings=limits.model_dump(mode="json"),
    )


async def _measure(
    p: Profiler, spec: TestingSpec, base: RunSpec, outcome: ArchOutcome, *, concurrency: bool
) -> None:
    """The repetitions of one architecture, then (`concurrency`) its copies side by side."""
    platform = outcome.architecture if outcome.emulated else None
    await p.runner.prepare(outcome.image, platform)
    one = replace(
        base,
        image=outcome.image,
        platform=platform,
        architecture=outcome.architecture,
        gpu=base.gpu and not outcome.emulated,
    )
    for _ in range(spec.repetitions_for(p.config)):
        outcome.runs.append(await p.runner.run(one))
    copies = spec.copies_for(p.config)
    solo_ok = all(
        not conclude.run_failure(r, spec.expected_exit_code, 0, one.timeout_seconds)
        for r in outcome.runs
    )
    if concurrency and copies > 1 and solo_ok:
        outcome.together = await p.runner.run_together(
            [one] * copies,
            memory_bytes=p.config.concurrency_memory_bytes,
            cpus=p.config.concurrency_cpus,
        )


def _test_run(outcome: ArchOutcome, rep: int, run: RunResult, why: str | None) -> TestRun:
    return TestRun(
        architecture=outcome.architecture,
        repetition=rep,
        exit_code=run.exit_code,
        oom_killed=run.oom_killed,
        timed_out=run.timed_out,
        wall_seconds=round(run.wall_seconds, 4),
        peak_memory_bytes=run.peak_memory_bytes,
        cpu_seconds=round(run.cpu_seconds, 4),
        cpu_user_seconds=round(run.cpu_user_seconds, 4),
        cpu_system_seconds=round(run.cpu_system_seconds, 4),
        cpu_cores=round(run.cpu_cores, 3),
        throttled_seconds=round(run.throttled_seconds, 4),
        nr_throttled=run.nr_throttled,
        gpu_memory_bytes=run.gpu_memory_bytes,
        gpu_utilization=run.gpu_utilization,
        emulated=outcome.emulated,
        startup_seconds=round(run.startup_seconds, 4),
        passed=why is None,
        failure=why,
        measured_by=run.measured_by,
        log_tail=run.log_tail,
    )


def _series(arch: str, rep: int, run: RunResult) -> ProfileSeries:
    step = max(1, -(-len(run.samples) // MAX_SERIES_POINTS))
    points = run.samples[::step]
    has_gpu = any(s.gpu_memory_bytes is not None for s in points)
    return ProfileSeries(
        architecture=arch,
        repetition=rep,
        interval_seconds=round(run.sample_interval * step, 4),
        t=[s.t for s in points],
        memory_bytes=[s.memory_bytes for s in points],
        cpu_cores=[s.cpu_cores for s in points],
        gpu_memory_bytes=[s.gpu_memory_bytes for s in points] if has_gpu else None,
        gpu_utilization=[s.gpu_utilization for s in points] if has_gpu else None,
    )
