"""The profiler's use cases on the bus, called by `sage_common.work.WorkConsumer`.

The profile id derives from the build id and the row is unique per build, so however often a
build is delivered, one profile and one `profile.done` come out. A cancelled build (a rebuild
superseded it) gets neither, also when its `build.done` comes after the cancel: the ECR keeps
nothing of a superseded build's profile.
"""

from __future__ import annotations

import logging

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from sage_common.events import make_event
from sage_common.schemas import BuildDone, ProfileDone
from sage_common.work import Accepted, Cancelled, Job

from .service import Profiler, profile
from .store import Store

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


class Profiles:
    """Profiles each successful build once (the `Worker` of `build.done`)."""

    def __init__(self, profiler: Profiler, store: Store, *, source: str) -> None:
        self.profiler, self.store, self.source = profiler, store, source

    async def accept(self, conn: asyncpg.Connection, build: BuildDone) -> Accepted[BuildDone]:
        """Failed builds, and builds profiled already, are recorded and passed over."""
        todo = build.status == "success" and not await self.store.has_profile(conn, build.build_id)
        return Accepted(build.build_id, build.app_id, build if todo else None)

    async def perform(self, build: BuildDone, job: Job) -> ProfileDone | None:
        """The profile of `build`; None when the build is cancelled (its containers removed)."""
        if job.cancelled:
            return None
        log.info("profiling", extra={"app_id": build.app_id, "build_id": build.build_id})
        with PROFILES_RUNNING.track_inprogress(), PROFILE_SECONDS.time():
            try:
                return await job.run(profile(self.profiler, build))
            except Cancelled:
                return None

    async def record(self, conn: asyncpg.Connection, build: BuildDone, result: ProfileDone) -> bool:
        if not await self.store.save_profile(conn, result):
            return False
        await self.store.enqueue(conn, make_event(self.source, result, subject=build.app_id))
        return True

    def finished(self, build: BuildDone, result: ProfileDone | None, recorded: bool) -> None:
        extra = {"app_id": build.app_id, "build_id": build.build_id}
        if result is None:
            PROFILES.labels("cancelled").inc()
            log.info("profile cancelled", extra=extra)
            return
        if recorded:
            PROFILES.labels(result.status).inc()
        log.info("profiled", extra={**extra, "status": result.status, "reason": result.reason})
