"""The builds running on this node: the concurrency limit and the switches that cancel them.

A cancel reaches a build two ways: at once when this node's consumer took the `build.cancel`
(or the newer build of the same app), and within `poll_seconds` when another replica recorded
it in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg

from sage_common.supervise import Supervised

from . import store
from .service import Job

log = logging.getLogger(__name__)


class Jobs:
    """Builds in progress here, at most `concurrency` of them running at once."""

    def __init__(self, pool: asyncpg.Pool, *, concurrency: int, poll_seconds: float = 1.0) -> None:
        self.pool = pool
        self.concurrency = max(1, concurrency)
        self.poll_seconds = poll_seconds
        self._slots = asyncio.Semaphore(self.concurrency)
        self._jobs: dict[str, Job] = {}
        # Supervised: restarted if it ever dies; the app's liveness watches it (`loop`).
        self.loop = Supervised("builder-cancel-poll", self._poll)

    @property
    def running(self) -> int:
        return len(self._jobs)

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
        """Stop `build_id` if it runs here; True if it did."""
        job = self._jobs.get(build_id)
        if job is None:
            return False
        job.request_cancel(reason)
        return True

    @contextlib.asynccontextmanager
    async def slot(self, job: Job) -> AsyncIterator[None]:
        """Hold one of the build slots; a job cancelled while it waits goes on without one."""
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
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def poll_once(self) -> None:
        """Cancel the builds here that someone asked, anywhere, to stop."""
        if not self._jobs:
            return
        reasons = await store.cancels(self.pool, list(self._jobs))
        for build_id, reason in reasons.items():
            self.cancel(build_id, reason)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.loop.failed(exc)
                log.warning("cancel poll failed", extra={"error": type(exc).__name__})
            else:
                self.loop.beat()
