"""Slow work per build on the bus (building it, profiling it): one consumer for every worker.

`WorkConsumer` accepts an event in one short transaction, works with none open, and records the
result with its event id and events in another; a worker killed mid-work is redelivered the event
and starts over, and the first attempt to record wins. `Jobs` is the work running here (a
concurrency limit, a cancel switch each); `CancelConsumer` records each `build.cancel` in the
service's `cancels` table and stops the work if it runs here. `docs/patterns.md` shows the use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from .bus import Bus, Consumer, Skip
from .events import CloudEvent, EventData
from .schemas import BuildCancelled
from .supervise import Supervised

log = logging.getLogger(__name__)
T = TypeVar("T")
D = TypeVar("D", bound=EventData)
R = TypeVar("R")
D_contra = TypeVar("D_contra", bound=EventData, contravariant=True)

# Longer than the bus's default: work that failed for a passing reason is costly to redo at once.
RETRY_DELAYS = (5.0, 30.0, 120.0)


# What a poll meets while its database restarts; InternalClientError: a pooled connection lost
# mid-query (MagicStack/asyncpg#1069). The supervisor counts the failure, the loop goes on.
_POLL_FAILURES = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class Cancelled(Exception):
    """The job was cancelled while its work ran (the work is stopped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TimedOut(Exception):
    """The work took longer than its limit (and was stopped)."""


@dataclass
class Job:
    """Work on one build in progress in this process, with the switch that cancels it."""

    build_id: str
    app_id: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def request_cancel(self, reason: str) -> None:
        """Stop the work; the first reason given stays."""
        if self.reason is None:
            self.reason = reason
        self.cancel.set()

    async def run(self, work: Awaitable[T], limit: float | None = None) -> T:
        """`work`'s result, unless the job is cancelled (`Cancelled`) or `limit` seconds pass first
        (`TimedOut`); then the work is stopped before this returns."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.create_task(self.cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task in done:
            return task.result()
        if waiter in done:
            raise Cancelled(self.reason or "cancelled")
        raise TimedOut(f"took longer than {limit}s")


# -- the cancels table (one per service schema, same shape: see each service's migrations) -------


async def request_cancel(
    conn: asyncpg.Connection, build_id: str, app_id: str, reason: str, requested_by: str | None
) -> None:
    """Ask for the work on `build_id` to stop (the first reason given stays)."""
    await conn.execute(
        """INSERT INTO cancels (build_id, app_id, reason, requested_by)
           VALUES ($1, $2, $3, $4) ON CONFLICT (build_id) DO NOTHING""",
        build_id,
        app_id,
        reason,
        requested_by,
    )


async def cancel_reasons(
    conn: asyncpg.Connection | asyncpg.Pool, build_ids: Sequence[str]
) -> dict[str, str]:
    """The cancel reason of each of `build_ids` that has one."""
    rows = await conn.fetch(
        "SELECT build_id, reason FROM cancels WHERE build_id = ANY($1::text[])", list(build_ids)
    )
    return {r["build_id"]: r["reason"] for r in rows}


class Jobs:
    """Work in progress here, at most `concurrency` of it running at once."""

    def __init__(
        self, pool: asyncpg.Pool, *, concurrency: int, poll_seconds: float = 1.0, name: str = "work"
    ) -> None:
        self.pool = pool
        self.concurrency = max(1, concurrency)
        self.poll_seconds = poll_seconds
        self._slots = asyncio.Semaphore(self.concurrency)
        self._jobs: dict[str, Job] = {}
        # Supervised: restarted if it ever dies; the app's liveness may watch it (`loop`).
        self.loop = Supervised(f"{name}-cancel-poll", self._poll)

    @contextlib.contextmanager
    def register(self, build_id: str, app_id: str) -> Iterator[Job]:
        job = Job(build_id, app_id)
        self._jobs[build_id] = job
        try:
            yield job
        finally:
            if self._jobs.get(build_id) is job:
                del self._jobs[build_id]

    def cancel(self, build_id: str, reason: str) -> bool:
        """Stop the work on `build_id` if it runs here; True if it did."""
        job = self._jobs.get(build_id)
        if job is None:
            return False
        job.request_cancel(reason)
        return True

    @contextlib.asynccontextmanager
    async def slot(self, job: Job) -> AsyncIterator[None]:
        """Hold one of the slots; a job cancelled while it waits goes on without one."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        cancelled = asyncio.ensure_future(job.cancel.wait())
        try:
            await asyncio.wait({acquire, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        held = acquire.done() and not acquire.cancelled()
        try:
            yield
        finally:
            if held:
                self._slots.release()

    async def start(self) -> None:
        """Poll the cancels table every `poll_seconds` (for cancels other replicas took)."""
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def poll_once(self) -> None:
        """Cancel the work here that someone asked, anywhere, to stop."""
        if not self._jobs:
            return
        for build_id, reason in (await cancel_reasons(self.pool, list(self._jobs))).items():
            self.cancel(build_id, reason)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll_once()
            except _POLL_FAILURES as exc:
                self.loop.failed(exc)
                log.warning("cancel poll failed", extra={"error": type(exc).__name__})
            else:
                self.loop.beat()


class CancelConsumer(Consumer):
    """Records each `build.cancel` (for a later delivery, and other replicas), then stops the
    build's work if it runs here."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, jobs: Jobs, *, name: str) -> None:
        super().__init__(pool, bus, name=name, routing_keys=["build.cancel"], prefetch=8)
        self.jobs = jobs

    async def process(self, event: CloudEvent) -> None:
        data = event.parse_data(BuildCancelled)
        reason = f"cancelled by {data.requested_by}"
        async with self.transaction(event) as conn:
            await request_cancel(conn, data.build_id, data.app_id, reason, data.requested_by)
        # Committed first: work not yet begun then sees it.
        if self.jobs.cancel(data.build_id, reason):
            log.info("work cancelled", extra={"build_id": data.build_id, "by": data.requested_by})


@dataclass
class Accepted(Generic[R]):
    """What a worker made of an event: the work to do (None: nothing, the event is only recorded)
    and other work here to stop (build id -> reason)."""

    build_id: str
    app_id: str
    request: R | None
    stop: dict[str, str] = field(default_factory=dict)


class Worker(Protocol[D_contra, R, T]):
    """The use cases a `WorkConsumer` calls, in this order."""

    async def accept(self, conn: asyncpg.Connection, data: D_contra) -> Accepted[R]:
        """Claim the work, inside a transaction (which commits before the work starts)."""

    async def perform(self, request: R, job: Job) -> T | None:
        """Do the work, no transaction open; None when it was cancelled and leaves no result."""

    async def record(self, conn: asyncpg.Connection, request: R, result: T) -> bool:
        """Keep the result, queue its event (with the event id's record); False: already kept."""

    def finished(self, request: R, result: T | None, recorded: bool) -> None:
        """After the result (or a cancel) is committed: metrics and logs."""


class WorkConsumer(Consumer, Generic[D, R, T]):
    """Parses `model` events and hands them to `worker`: accept, perform, record."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        jobs: Jobs,
        worker: Worker[D, R, T],
        model: type[D],
        *,
        name: str,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        prefetch: int = 1,
    ) -> None:
        super().__init__(
            pool,
            bus,
            name=name,
            routing_keys=[model.routing_key],
            retry_delays=retry_delays,
            prefetch=prefetch,
            stop_grace=5.0,
        )
        self.jobs, self.worker, self.model = jobs, worker, model

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        data = event.parse_data(self.model)
        async with self.pool.acquire() as conn, conn.transaction():
            accepted = await self.worker.accept(conn, data)
        for build_id, reason in accepted.stop.items():
            self.jobs.cancel(build_id, reason)
        request = accepted.request
        if request is None:
            async with self.transaction(event):
                return
        with self.jobs.register(accepted.build_id, accepted.app_id) as job:
            async with self.jobs.slot(job):
                # Registered first, so a cancel recorded at any moment is seen here or stops it.
                asked = (await cancel_reasons(self.pool, [job.build_id])).get(job.build_id)
                if asked is not None:
                    job.request_cancel(asked)
                result = await self.worker.perform(request, job)
        if result is None:
            async with self.transaction(event):
                pass  # recorded as handled: no result, no event
            self.worker.finished(request, None, False)
            return
        done = result

        async def record() -> bool:
            async with self.transaction(event) as conn:
                return await self.worker.record(conn, request, done)

        # A database outage now waits here, so the finished work is not done again.
        ctx: dict[str, Any] = {"app_id": accepted.app_id, "build_id": accepted.build_id}
        recorded = await self.outlast(record, ctx)
        self.worker.finished(request, result, recorded)
