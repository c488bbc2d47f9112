"""The builder's `Worker` of `app.submitted` (docs/patterns.md, "Workers"): claim a build with
`build.started` (superseding the app's older builds), run it, and record its one `build.done`
however often the event is delivered: a redelivery starts a running build over, or does nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from sage_common.events import make_event
from sage_common.schemas import AppSubmitted, BuildDone, BuildStarted
from sage_common.work import Accepted, Job

from .models import BuildRequest
from .service import Builder, log_key, request_from_event
from .store import Store

log = logging.getLogger(__name__)

BUILDS = Counter("sage_builder_builds_total", "Builds finished", ["status", "error_class"])
BUILD_SECONDS = Histogram(
    "sage_builder_build_seconds",
    "Time from a build's start to its result",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
SOURCE = "sage-builder"
RUNNING = Gauge("sage_builder_running_builds", "Builds in progress on this node")


class Builds:
    """Builds each submitted app version once (the `Worker` of `app.submitted`)."""

    def __init__(self, builder: Builder, store: Store) -> None:
        self.builder, self.store = builder, store

    async def accept(self, conn: asyncpg.Connection, data: AppSubmitted) -> Accepted[BuildRequest]:
        request = request_from_event(data)
        state = await self.store.claim(conn, request.build_id, request.app_id)
        if state == "finished":
            return Accepted(request.build_id, request.app_id, None)
        older = await self.store.supersede(conn, request.app_id, request.build_id)
        if state == "new":
            started = BuildStarted(
                app_id=request.app_id,
                build_id=request.build_id,
                started_at=datetime.now(UTC),
                log_location=self.builder.sink.location(log_key(request)),
            )
            await self.store.enqueue(conn, make_event(SOURCE, started, subject=request.app_id))
        extra = {"app_id": request.app_id, "build_id": request.build_id, "claim": state}
        log.info("build accepted", extra=extra)
        stop = dict.fromkeys(older, f"superseded by build {request.build_id}")
        return Accepted(request.build_id, request.app_id, request, stop)

    async def perform(self, request: BuildRequest, job: Job) -> BuildDone:
        with RUNNING.track_inprogress():
            return await self.builder.run(request, job)

    async def record(
        self, conn: asyncpg.Connection, request: BuildRequest, done: BuildDone
    ) -> bool:
        recorded = await self.store.finish(conn, done)
        if recorded:
            await self.store.enqueue(conn, make_event(SOURCE, done, subject=request.app_id))
        return recorded

    def finished(self, request: BuildRequest, done: BuildDone | None, recorded: bool) -> None:
        assert done is not None  # a build always has a result, a cancelled one too
        if recorded:
            BUILDS.labels(done.status, done.error_class or "").inc()
            BUILD_SECONDS.observe(done.duration_seconds)
        extra = {
            "app_id": request.app_id,
            "build_id": request.build_id,
            "status": done.status,
            "error_class": done.error_class,
            "recorded": recorded,
            "seconds": done.duration_seconds,
        }
        log.info("build finished", extra=extra)
