"""The idempotent consumer: one durable queue, retry queues with back-off, and a dead-letter queue.

Topology for a consumer named `n` (all durable):

- `n` is bound to the events exchange for each routing key; it is a quorum queue with a delivery
  limit, so a message whose delivery kills the consumer process every time (the broker sees the
  connection drop with it unacked) is dead-lettered to `n.dlq` by the broker after
  `delivery_limit` deliveries instead of looping forever (`queues.py` migrates a classic `n`);
- `n.retry.<ms>ms`, one per delay, holds a failed message for its TTL and then dead-letters it back
  to `n`; no consumer reads it;
- `n.dlq` keeps a message that failed on every attempt, or could not be parsed at all, with its
  error in the headers (`x-error`, `x-attempts`, `x-first-failure`, `x-last-failure`,
  `x-consumer`, `x-routing-key`);
- `n.requeue`, a direct exchange (deleted with the queues) routing to `n`, the retry queues and
  the DLQ by their names: the consumer moves messages through it, and it is every queue's
  dead-letter exchange, rather than the default exchange, so the service's broker user needs no
  right to put messages into other services' queues (sage_common.bus.grants).

A failed message is republished (with confirms) to its retry or dead-letter queue and only then
acked, so it never blocks the queue and is never lost. A successful one is acked only after the
transaction that recorded it in `processed_events` committed, so a redelivery is a no-op.

An outage (the database, or a dependency a subclass names in `is_transient`) is not the event's
fault: the consumer keeps the message and retries it in place with back-off, however long the
outage lasts, so the broker's delivery count is not spent on it. `stalled()` tells readiness
while such an outage lasts longer than the stall threshold, or the channel is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustExchange,
    AbstractRobustQueue,
    ConsumerTag,
)
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelPreconditionFailed

from ..events import CloudEvent
from ..logs import new_request_id, request_id
from ..metrics import EVENT_LAG, EVENTS_DEAD, EVENTS_DUPLICATE, EVENTS_FAILED, EVENTS_HANDLED
from .broker import Bus
from .envelope import (
    InvalidEnvelope,
    Skip,
    attempts,
    describe,
    failure_headers,
    lag_seconds,
    parse_envelope,
)
from .queues import DEFAULT_DELIVERY_LIMIT, copy_message, declare_main_queue

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures that say a dependency is down rather than that the event is bad.
_OUTAGES = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up (not a cancel)
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,  # the connection died mid-query
    ConnectionError,  # refused, reset: the database (or another service) is not there
)

DEFAULT_RETRY_DELAYS = (1.0, 5.0, 25.0)


def requeue_exchange_name(name: str) -> str:
    """The exchange a consumer called `name` moves failed messages through (to retry or DLQ)."""
    return f"{name}.requeue"


def queue_names(name: str, retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS) -> list[str]:
    """Every queue a consumer called `name` declares: its own, one per retry delay, its DLQ."""
    retry = dict.fromkeys(f"{name}.retry.{round(d * 1000)}ms" for d in retry_delays)
    return [name, *retry, f"{name}.dlq"]


class Consumer:
    """Subclass per consumer; override `handle`, or `process` for slow work outside a transaction.

    Each instance consumes one durable queue named `name`; run one per service replica.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        *,
        name: str,
        routing_keys: Sequence[str],
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int = 8,
        stop_grace: float = 10.0,
        transient_pause: float = 1.0,
        max_transient_pause: float = 15.0,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    ) -> None:
        if not name or not routing_keys:
            raise ValueError("a consumer needs a name and at least one routing key")
        if any(d <= 0 for d in retry_delays):
            raise ValueError("retry delays must be positive")
        self.pool = pool
        self.bus = bus
        self.name = name
        self.routing_keys = list(routing_keys)
        self.retry_delays = tuple(retry_delays)
        self.prefetch = prefetch
        self.stop_grace = stop_grace
        self.transient_pause = transient_pause
        self.max_transient_pause = max_transient_pause
        self.delivery_limit = delivery_limit
        self._outage_since: float | None = None  # while any delivery waits on an outage
        self._waiting = 0
        self._outage_error = ""
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractRobustQueue | None = None
        self._requeue: AbstractRobustExchange | None = None
        self._tag: ConsumerTag | None = None
        self._inflight: set[asyncio.Task[Any]] = set()

    # -- names -------------------------------------------------------------------------------

    @property
    def dlq_name(self) -> str:
        return f"{self.name}.dlq"

    def retry_queue_name(self, delay: float) -> str:
        return f"{self.name}.retry.{round(delay * 1000)}ms"

    @property
    def queue_names(self) -> list[str]:
        """Every queue this consumer declares (for operators and test clean-up)."""
        return queue_names(self.name, self.retry_delays)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Declare the queues and bindings, then consume with `prefetch` messages in flight."""
        channel = await self.bus.channel(prefetch=self.prefetch)
        self._channel = channel
        # Auto-delete: it goes when the queues bound to it are deleted.
        requeue = await channel.declare_exchange(
            requeue_exchange_name(self.name),
            aio_pika.ExchangeType.DIRECT,
            durable=True,
            auto_delete=True,
        )
        dlq = await channel.declare_queue(self.dlq_name, durable=True)
        await dlq.bind(requeue, self.dlq_name)
        for delay in dict.fromkeys(self.retry_delays):
            retry = await self._declare(
                channel,
                self.retry_queue_name(delay),
                {
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": requeue.name,
                    "x-dead-letter-routing-key": self.name,
                },
            )
            await retry.bind(requeue, retry.name)
        self._requeue = requeue
        # Quorum with a delivery limit; a reject without requeue still lands in the DLQ.
        queue = await declare_main_queue(
            self.bus,
            channel,
            self.name,
            self.dlq_name,
            self.routing_keys,
            self.delivery_limit,
            requeue.name,
        )
        self._queue = queue
        self._tag = await queue.consume(self._on_message)
        log.info("consumer started", extra={**self._ctx(), "routing_keys": self.routing_keys})

    async def _declare(
        self, channel: AbstractRobustChannel, name: str, arguments: dict[str, Any]
    ) -> AbstractRobustQueue:
        """Declare one of this consumer's queues. One an older release declared with the default
        exchange as its dead-letter exchange is replaced if empty (else the start fails, saying
        what to do): its arguments cannot change in place."""
        probe = await self.bus.channel()
        try:
            await probe.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:
            await self._replace_if_empty(name)
        finally:
            if not probe.is_closed:
                await probe.close()
        return await channel.declare_queue(name, durable=True, arguments=arguments)

    async def _replace_if_empty(self, name: str) -> None:
        fresh = await self.bus.channel()
        try:
            await fresh.queue_delete(name, if_empty=True)
        except ChannelPreconditionFailed:
            raise RuntimeError(
                f"queue {name} has other arguments (an older release declared it) and holds"
                " messages: let them be consumed by the older release, or move them, then delete it"
            ) from None
        finally:
            if not fresh.is_closed:
                await fresh.close()
        log.warning("queue declared by an older release replaced", extra={"queue": name})

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages; give in-flight ones `grace` seconds, then hand the rest back."""
        queue, tag, channel = self._queue, self._tag, self._channel
        self._queue = self._tag = self._channel = None
        if queue is not None and tag is not None:
            with suppress(Exception):
                await queue.cancel(tag, timeout=5)
        pending = set(self._inflight)
        if pending:
            wait = self.stop_grace if grace is None else grace
            _, pending = await asyncio.wait(pending, timeout=wait)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if channel is not None and not channel.is_closed:
            await channel.close()
        log.info("consumer stopped", extra={"consumer": self.name})

    @property
    def channel_closed(self) -> bool:
        """Started, but its channel is closed (and not being restored)."""
        channel = self._channel
        return channel is not None and channel.is_closed

    def stalled(self, seconds: float) -> str | None:
        """Why this consumer cannot make progress (for readiness), or None."""
        channel = self._channel
        if channel is None or channel.is_closed:
            return f"consumer {self.name} has no open channel"
        since = self._outage_since
        if since is not None and time.monotonic() - since > seconds:
            return f"consumer {self.name} waits on an outage: {self._outage_error}"
        return None

    # -- what subclasses use -----------------------------------------------------------------

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        """Apply `event` inside the transaction that records it; override this."""
        raise NotImplementedError(f"{type(self).__name__} must override handle() or process()")

    async def process(self, event: CloudEvent) -> None:
        """Record the event and handle it in one transaction; raise Skip when already recorded."""
        async with self.transaction(event) as conn:
            await self.handle(conn, event)

    def is_transient(self, exc: Exception) -> bool:
        """Whether `exc` is an outage, not the event's fault: the message waits without using up a
        retry, so a database restart dead-letters nothing. Subclasses add their dependencies'."""
        return isinstance(exc, _OUTAGES) and not isinstance(exc, asyncpg.QueryCanceledError)

    async def seen(self, event_id: str) -> bool:
        """Whether this consumer already recorded `event_id` (to skip slow work on a redelivery)."""
        async with self.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT EXISTS (SELECT FROM processed_events WHERE consumer=$1 AND event_id=$2)",
                self.name,
                uuid.UUID(event_id),
            )
        return bool(found)

    @asynccontextmanager
    async def transaction(self, event: CloudEvent) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that records the event first; raises Skip if another delivery did."""
        async with self.pool.acquire() as conn, conn.transaction():
            # A concurrent delivery of the same event waits here on the key, then finds it taken.
            inserted = await conn.fetchval(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                uuid.UUID(event.id),
            )
            if not inserted:
                raise Skip(event.id)
            yield conn

    # -- delivery ----------------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            # Any exception (a cancel included) gives the message back to the broker.
            async with message.process(requeue=True, ignore_processed=True):
                try:
                    await self._dispatch(message)
                except Exception:
                    log.exception("could not settle a message; giving it back", extra=self._ctx())
                    await asyncio.sleep(1.0)  # no hot loop while the broker refuses our publishes
                    raise
        except Exception:  # noqa: BLE001, S110 - logged above; the message was given back
            pass
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def outlast(self, step: Callable[[], Awaitable[T]], ctx: dict[str, Any]) -> T:
        """Await `step()` until it does not fail with an outage (retried in place, backing off);
        around the last step of slow work, so a database restart then does not redo the work."""
        pause = self.transient_pause
        waiting = False
        try:
            while True:
                try:
                    return await step()
                except Exception as exc:
                    if not self.is_transient(exc):
                        raise
                    EVENTS_FAILED.labels(self.bus.service, self.name).inc()
                    if not waiting:
                        waiting = True
                        self._waiting += 1
                        if self._outage_since is None:
                            self._outage_since = time.monotonic()
                    self._outage_error = describe(exc)
                    extra = {**ctx, "error": self._outage_error, "retry_in": pause}
                    log.warning("a dependency is down; the event waits here", extra=extra)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_transient_pause)
        finally:
            if waiting:
                self._waiting -= 1
                if self._waiting == 0:
                    self._outage_since = None

    async def _dispatch(self, message: AbstractIncomingMessage) -> None:
        service = self.bus.service
        try:
            event = parse_envelope(message.body)
        except InvalidEnvelope as exc:
            EVENTS_FAILED.labels(service, self.name).inc()
            await self._give_up(message, f"unparseable envelope: {exc}")
            return
        token = request_id.set(event.requestid or new_request_id())
        try:
            ctx = self._ctx(event)
            EVENT_LAG.labels(service, self.name).observe(lag_seconds(event))
            try:
                await self.outlast(lambda: self.process(event), ctx)
            except Skip:
                await message.ack()
                EVENTS_DUPLICATE.labels(service, self.name).inc()
                log.info("duplicate event ignored", extra=ctx)
                return
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead
                EVENTS_FAILED.labels(service, self.name).inc()
                await self._retry(message, exc, ctx)
                return
            EVENTS_HANDLED.labels(service, self.name).inc()  # committed, whatever befalls the ack
            log.info("event handled", extra=ctx)
            await message.ack()
        finally:
            request_id.reset(token)

    async def _retry(
        self, message: AbstractIncomingMessage, exc: Exception, ctx: dict[str, Any]
    ) -> None:
        failed = attempts(message.headers) + 1
        if failed > len(self.retry_delays):
            extra = {**ctx, "attempts": failed}
            log.error("event failed on every attempt", exc_info=exc, extra=extra)
            await self._give_up(message, describe(exc))
            return
        delay = self.retry_delays[failed - 1]
        log.warning(
            "event failed; will retry",
            exc_info=exc,
            extra={**ctx, "attempts": failed, "retry_in": delay},
        )
        await self._republish(message, self.retry_queue_name(delay), describe(exc))
        await message.ack()

    async def _give_up(self, message: AbstractIncomingMessage, error: str) -> None:
        await self._republish(message, self.dlq_name, error)
        await message.ack()
        EVENTS_DEAD.labels(self.bus.service, self.name).inc()
        extra = {**self._ctx(), "queue": self.dlq_name, "error": error}
        log.error("message dead-lettered", extra=extra)

    async def _republish(self, message: AbstractIncomingMessage, queue: str, error: str) -> None:
        """Copy `message` into `queue` with the failure recorded in its headers, confirmed."""
        requeue = self._requeue
        if self._channel is None or requeue is None:
            raise RuntimeError("consumer is stopped")
        headers = failure_headers(
            message.headers, error=error, consumer=self.name, routing_key=message.routing_key or ""
        )
        copy = copy_message(message, headers)
        result = await requeue.publish(copy, queue, mandatory=True, timeout=10)
        if isinstance(result, DeliveredMessage):
            raise RuntimeError(f"queue {queue} is missing; message not moved")

    def _ctx(self, event: CloudEvent | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {"consumer": self.name}
        if event is not None:
            ctx.update(event_id=event.id, event_type=event.type, subject=event.subject)
        return ctx
