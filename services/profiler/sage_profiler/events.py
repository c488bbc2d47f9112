"""The profiler's consumers: `build.done` runs a profile, `build.cancel` stops one.

Profiling takes minutes, so it runs outside any transaction (`process`); only recording the event,
storing the profile and enqueueing `profile.done` share one short transaction. A profiler killed
mid-run never acked the message: the broker redelivers it and the build is profiled again from
the start. The profile id is derived from the build id and the row is unique per build, so
however often it is delivered, one profile and one `profile.done` come out.

A `build.cancel` (the ECR sends it when a rebuild supersedes a build) is recorded, and the build's
profile, if it runs here, is cancelled: its containers are removed and its slot freed. A cancelled
build gets no profile and no `profile.done`, also when its `build.done` comes after the cancel:
the ECR keeps nothing of a superseded build's profile anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from sage_common.bus import Bus, Consumer, Skip, enqueue
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import BuildCancelled, BuildDone, ProfileDone

from . import store
from .service import Profiler, profile

log = logging.getLogger(__name__)

PROFILES = Counter(
    "sage_profiles_total", "Profiles finished, by verdict (or cancelled)", ["status"]
)
PROFILE_SECONDS = Histogram(
    "sage_profile_duration_seconds",
    "Time to profile one build",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
PROFILES_RUNNING = Gauge("sage_profiles_running", "Profiles in progress")


class RunningProfiles:
    """The profiles running in this process, by build id, so that a `build.cancel` stops one."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[ProfileDone | None]] = {}
        self._cancelled: set[asyncio.Task[ProfileDone | None]] = set()

    @contextlib.contextmanager
    def register(self, build_id: str, task: asyncio.Task[ProfileDone | None]) -> Iterator[None]:
        self._tasks[build_id] = task
        try:
            yield
        finally:
            if self._tasks.get(build_id) is task:
                del self._tasks[build_id]
            self._cancelled.discard(task)

    def cancel(self, build_id: str) -> bool:
        """Cancel the profile of `build_id` if it runs here; True if it did."""
        task = self._tasks.get(build_id)
        if task is None or task.done():
            return False
        self._cancelled.add(task)
        task.cancel()
        return True

    def was_cancelled(self, task: asyncio.Task[ProfileDone | None]) -> bool:
        """Whether `task` ended because its build was cancelled (not because we are stopping)."""
        return task in self._cancelled and task.cancelled()


# Longer than the bus's default: a profile that failed for a passing reason is costly to redo at once.
RETRY_DELAYS = (5.0, 30.0, 120.0)


class BuildDoneConsumer(Consumer):
    """Profiles each successful build once; failed and cancelled builds are recorded and passed
    over."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        profiler: Profiler,
        *,
        name: str,
        source: str,
        parallel: int = 1,
        running: RunningProfiles | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        super().__init__(
            pool,
            bus,
            name=name,
            routing_keys=["build.done"],
            retry_delays=retry_delays,
            prefetch=max(1, parallel),
            stop_grace=5.0,
        )
        self.profiler = profiler
        self.source = source
        self.running = RunningProfiles() if running is None else running
        self._slots = asyncio.Semaphore(max(1, parallel))

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        build = event.parse_data(BuildDone)
        if build.status != "success" or await store.has_profile(self.pool, build.build_id):
            async with self.transaction(event):
                return
        async with self._slots:
            # Registered before the cancel check, so a build.cancel recorded at any moment
            # either is seen by the check or finds the task to cancel.
            task = asyncio.create_task(self._profile(build), name=f"profile-{build.build_id}")
            with self.running.register(build.build_id, task):
                try:
                    result = await task
                except asyncio.CancelledError:
                    stopping = (current := asyncio.current_task()) and current.cancelling()
                    if stopping or not self.running.was_cancelled(task):
                        raise
                    result = None
        if result is None:
            async with self.transaction(event):
                pass  # recorded as handled: no profile, no profile.done
            PROFILES.labels("cancelled").inc()
            log.info(
                "profile cancelled", extra={"app_id": build.app_id, "build_id": build.build_id}
            )
            return

        async def record() -> None:
            async with self.transaction(event) as conn:
                if await store.save_profile(conn, result):
                    await enqueue(conn, make_event(self.source, result, subject=build.app_id))
                    PROFILES.labels(result.status).inc()

        # A database outage now waits here, so the finished profile is not run again.
        ctx = {"app_id": build.app_id, "build_id": build.build_id}
        await self.outlast(record, ctx)
        log.info(
            "profiled",
            extra={
                "app_id": build.app_id,
                "build_id": build.build_id,
                "status": result.status,
                "reason": result.reason,
            },
        )

    async def _profile(self, build: BuildDone) -> ProfileDone | None:
        """The profile of `build`, or None when the build was cancelled before it began."""
        if await store.is_cancelled(self.pool, build.build_id):
            return None
        log.info("profiling", extra={"app_id": build.app_id, "build_id": build.build_id})
        with PROFILES_RUNNING.track_inprogress(), PROFILE_SECONDS.time():
            return await profile(self.profiler, build)


class CancelConsumer(Consumer):
    """Records each `build.cancel` (for a later `build.done`, and other replicas) and stops the
    build's profile if it runs here."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, running: RunningProfiles, *, name: str
    ) -> None:
        super().__init__(pool, bus, name=name, routing_keys=["build.cancel"], prefetch=8)
        self.running = running

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        data = event.parse_data(BuildCancelled)
        await store.record_cancel(conn, data.build_id, data.app_id, data.requested_by)

    async def process(self, event: CloudEvent) -> None:
        await super().process(event)  # committed first: a profile not yet begun then sees it
        data = event.parse_data(BuildCancelled)
        if self.running.cancel(data.build_id):
            log.info(
                "profile of a cancelled build stopped",
                extra={"build_id": data.build_id, "by": data.requested_by},
            )
