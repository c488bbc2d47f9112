"""The profiler's consumer: `build.done` in, a profile run, `profile.done` out through the outbox.

Profiling takes minutes, so it runs outside any transaction (`process`); only recording the event,
storing the profile and enqueueing `profile.done` share one short transaction. A profiler killed
mid-run never acked the message: the broker redelivers it and the build is profiled again from
the start. The profile id is derived from the build id and the row is unique per build, so
however often it is delivered, one profile and one `profile.done` come out.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Counter, Gauge, Histogram
from sage_common.bus import Bus, Consumer, Skip, enqueue
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import BuildDone

from . import store
from .service import Profiler, profile

log = logging.getLogger(__name__)

PROFILES = Counter("sage_profiles_total", "Profiles finished, by verdict", ["status"])
PROFILE_SECONDS = Histogram(
    "sage_profile_duration_seconds",
    "Time to profile one build",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
PROFILES_RUNNING = Gauge("sage_profiles_running", "Profiles in progress")


class BuildDoneConsumer(Consumer):
    """Profiles each successful build once; failed builds are recorded and passed over."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        profiler: Profiler,
        *,
        name: str,
        source: str,
        parallel: int = 1,
        retry_delays: tuple[float, ...] = (5.0, 30.0, 120.0),
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
        self._slots = asyncio.Semaphore(max(1, parallel))

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        build = event.parse_data(BuildDone)
        if build.status != "success" or await store.has_profile(self.pool, build.build_id):
            async with self.transaction(event):
                return
        async with self._slots:
            log.info("profiling", extra={"app_id": build.app_id, "build_id": build.build_id})
            with PROFILES_RUNNING.track_inprogress(), PROFILE_SECONDS.time():
                result = await profile(self.profiler, build)
        async with self.transaction(event) as conn:
            if await store.save_profile(conn, result):
                await enqueue(conn, make_event(self.source, result, subject=build.app_id))
                PROFILES.labels(result.status).inc()
        log.info(
            "profiled",
            extra={
                "app_id": build.app_id,
                "build_id": build.build_id,
                "status": result.status,
                "reason": result.reason,
            },
        )
