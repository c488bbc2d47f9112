"""The builder's consumers: `app.submitted` runs a build, `build.cancel` stops one.

A build takes minutes, so it runs outside any transaction (`process`). Claiming the build (with
`build.started`) is one short transaction, and recording its one result with `build.done` and the
event id is another. A builder killed mid-build never acked the message: the broker redelivers it,
the claim finds the build still running, and it starts over; whichever attempt records first is
the result, so a build id has one `build.done` however often it is delivered. A database outage
when the result is to be recorded is waited out in place, so the build is not run again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from sage_common.bus import Bus, Consumer, Skip, enqueue
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import AppSubmitted, BuildCancelled, BuildStarted

from . import store
from .jobs import Jobs
from .service import Builder, log_key, request_from_event

log = logging.getLogger(__name__)

BUILDS = Counter("sage_builder_builds_total", "Builds finished", ["status", "error_class"])
BUILD_SECONDS = Histogram(
    "sage_builder_build_seconds",
    "Time from a build's start to its result",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
RUNNING = Gauge("sage_builder_running_builds", "Builds in progress on this node")


# Longer than the bus's default: a build that failed for a passing reason is costly to redo at once.
RETRY_DELAYS = (5.0, 30.0, 120.0)


class SubmittedConsumer(Consumer):
    """Builds each submitted app version once, at most `jobs.concurrency` at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        builder: Builder,
        jobs: Jobs,
        *,
        name: str,
        source: str,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        # More messages in hand than slots, so a rebuild is seen (and cancels) while one runs.
        super().__init__(
            pool,
            bus,
            name=name,
            routing_keys=["app.submitted"],
            retry_delays=retry_delays,
            prefetch=jobs.concurrency * 2 + 2,
            stop_grace=5.0,
        )
        self.builder, self.jobs, self.source = builder, jobs, source

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        data = event.parse_data(AppSubmitted)
        request = request_from_event(data)
        async with self.pool.acquire() as conn, conn.transaction():
            state = await store.claim(conn, request.build_id, request.app_id)
            older = []
            if state != "finished":
                older = await store.supersede(conn, request.app_id, request.build_id)
            if state == "new":
                started = BuildStarted(
                    app_id=request.app_id,
                    build_id=request.build_id,
                    started_at=datetime.now(UTC),
                    log_location=self.builder.sink.location(log_key(request)),
                )
                await enqueue(conn, make_event(self.source, started, subject=request.app_id))
        for old in older:
            self.jobs.cancel(old, f"superseded by build {request.build_id}")
        if state == "finished":
            async with self.transaction(event):
                return
        extra = {"app_id": request.app_id, "build_id": request.build_id, "claim": state}
        log.info("build accepted", extra=extra)
        with self.jobs.register(request.build_id, request.app_id) as job:
            async with self.jobs.slot(job):
                reason = (await store.cancels(self.pool, [request.build_id])).get(request.build_id)
                if reason is not None:
                    job.request_cancel(reason)
                RUNNING.inc()
                try:
                    done = await self.builder.run(request, job)
                finally:
                    RUNNING.dec()

        async def record() -> bool:
            async with self.transaction(event) as conn:
                recorded = await store.finish(conn, done)
                if recorded:
                    await enqueue(conn, make_event(self.source, done, subject=request.app_id))
            return recorded

        # A database outage now waits here, so the finished build is not built again.
        recorded = await self.outlast(record, extra)
        if recorded:
            BUILDS.labels(done.status, done.error_class or "").inc()
            BUILD_SECONDS.observe(done.duration_seconds)
        log.info(
            "build finished",
            extra={
                **extra,
                "status": done.status,
                "error_class": done.error_class,
                "recorded": recorded,
                "seconds": done.duration_seconds,
            },
        )


class CancelConsumer(Consumer):
    """Records each `build.cancel` (for every replica to see) and stops the build if it is here."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, jobs: Jobs, *, name: str) -> None:
        super().__init__(pool, bus, name=name, routing_keys=["build.cancel"], prefetch=8)
        self.jobs = jobs

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        data = event.parse_data(BuildCancelled)
        reason = f"cancelled by {data.requested_by}"
        await store.request_cancel(conn, data.build_id, data.app_id, reason, data.requested_by)

    async def process(self, event: CloudEvent) -> None:
        await super().process(event)
        data = event.parse_data(BuildCancelled)
        if self.jobs.cancel(data.build_id, f"cancelled by {data.requested_by}"):
            log.info("build cancelled", extra={"build_id": data.build_id, "by": data.requested_by})
