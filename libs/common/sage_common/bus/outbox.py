"""The transactional outbox: events commit with the state change that caused them, then a relay
publishes them with confirms.

`enqueue` writes the event in the caller's transaction and notifies the relay, which only sees
the row (and the notification) once that transaction commits; a rollback leaves nothing to send.
The relay locks a batch of unsent rows (`FOR UPDATE SKIP LOCKED`, so replicas share the work
without sending a row twice), publishes them in order, each confirmed, and marks the confirmed
ones sent in the same transaction. It stops a batch at the first failure, so no row is skipped.

The relay outlives any outage: a failed pass (database or broker gone) backs off and retries
forever, its LISTEN connection is reopened after a database restart, and the loop itself runs
supervised (restarted if it ever dies). `stalled()` tells readiness when no pass has succeeded
for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from ..events import CloudEvent
from ..metrics import OUTBOX_PENDING
from ..supervise import Supervised
from .broker import Bus

log = logging.getLogger(__name__)

# One notification channel per schema, so relays of other services in the same database sleep on.
_CHANNEL_SQL = "'sage_outbox.' || current_schema()"


class BusUnavailable(ConnectionError):
    """The broker connection is down; the relay waits for it to come back."""


async def enqueue(conn: asyncpg.Connection, event: CloudEvent) -> None:
    """Add `event` to the outbox inside the caller's open transaction, and wake the relay."""
    if not conn.is_in_transaction():
        raise RuntimeError("enqueue() must run inside the transaction of the change it announces")
    await conn.execute(
        f"""WITH added AS (
                INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3::text::jsonb)
            )
            SELECT pg_notify({_CHANNEL_SQL}, '')""",
        uuid.UUID(event.id),
        event.routing_key,
        event.model_dump_json(),
    )


class OutboxRelay:
    """Publishes unsent outbox rows; wakes on NOTIFY, on a broker reconnect, every poll_seconds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        *,
        service: str,
        poll_seconds: float = 1.0,
        batch: int = 100,
        max_backoff: float = 30.0,
        publish_timeout: float = 10.0,
        keep_sent: timedelta = timedelta(days=7),
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.service = service
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.max_backoff = max_backoff
        self.publish_timeout = publish_timeout
        self.keep_sent = keep_sent
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop = Supervised(f"outbox-relay-{service}", self._run)
        self._listener: Any = None  # a pool connection held for LISTEN
        self._channel = ""
        self._last_prune: float | None = None
        bus.on_reconnect(self.wake)

    def wake(self) -> None:
        """Run a pass now (new rows committed, or the broker is back)."""
        self._wake.set()

    @property
    def alive(self) -> bool:
        """False once the relay loop died beyond restarting (liveness)."""
        return self._loop.alive

    def stalled(self, seconds: float) -> str | None:
        """Why the relay counts as stuck (no successful pass for `seconds`), or None."""
        return self._loop.stalled(seconds)

    async def start(self) -> None:
        self._stopping = False
        self._loop.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the pass in progress (up to `grace` seconds), then stop listening."""
        self._stopping = True
        self.wake()
        task = self._loop.task
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), grace)
        await self._loop.stop()
        await self._unlisten()

    async def relay_once(self) -> int:
        """Publish up to `batch` unsent rows in order; return how many were confirmed and marked."""
        if not self.bus.connected:
            raise BusUnavailable("the broker connection is down")
        error: BaseException | None = None
        sent: list[int] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    """SELECT id, event_id, routing_key, body::text AS body FROM outbox
                       WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                    self.batch,
                )
                for row in rows:
                    try:
                        await self.bus.publish_raw(
                            row["routing_key"],
                            row["body"].encode(),
                            message_id=str(row["event_id"]),
                            timeout=self.publish_timeout,
                        )
                    except Exception as exc:  # noqa: BLE001 - keep what was confirmed, retry the rest
                        error = exc
                        break
                    sent.append(row["id"])
                if sent:
                    await conn.execute(
                        "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", sent
                    )
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            OUTBOX_PENDING.labels(self.service).set(pending)
        if error is not None:
            raise error
        return len(sent)

    async def _run(self) -> None:
        backoff = min(self.poll_seconds, 1.0)
        while not self._stopping:
            self._wake.clear()
            try:
                await self._listen()
                sent = await self.relay_once()
                await self._prune()
            except Exception as exc:  # noqa: BLE001 - broker or database down: back off, never give up
                self._loop.failed(exc)
                if not _alive(self._listener):
                    await self._unlisten()
                log.warning(
                    "outbox relay pass failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in": backoff},
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = min(self.poll_seconds, 1.0)
            self._loop.beat()
            if sent:
                log.debug("outbox rows published", extra={"count": sent})
            if sent < self.batch:
                await self._sleep(self.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _listen(self) -> None:
        """Hold a connection that LISTENs for new rows; reopen it after a database restart."""
        if _alive(self._listener):
            return
        await self._unlisten()
        conn = await self.pool.acquire()
        try:
            self._channel = await conn.fetchval(f"SELECT {_CHANNEL_SQL}")
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            await self.pool.release(conn)
            raise
        self._listener = conn

    async def _unlisten(self) -> None:
        """Give the LISTEN connection back; after a database restart it is already dead."""
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.remove_listener(self._channel, self._notified)
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    def _notified(self, *_: object) -> None:
        self.wake()

    async def _prune(self) -> None:
        """Delete rows sent longer ago than `keep_sent`, at most once an hour."""
        now = asyncio.get_running_loop().time()
        if self._last_prune is not None and now - self._last_prune < 3600:
            return
        self._last_prune = now
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM outbox WHERE sent_at < now() - $1::interval", self.keep_sent
            )


def _alive(conn: Any) -> bool:
    """Whether a held pool connection still works; the pool detaches one whose socket died."""
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # "released back to the pool": its connection was lost
        return False
