"""The transactional outbox against the real Postgres and RabbitMQ: what commits is published,
once, even across a broker outage and with several relays at once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from yarl import URL

from sage_common import db
from sage_common.bus import CONTENT_TYPE, Bus, OutboxRelay, enqueue
from sage_common.events import CloudEvent, EventData, make_event
from sage_common.metrics import EVENTS_PUBLISHED
from tests.support.bus import TcpProxy, delete_topology, eventually


class Pinged(EventData):
    routing_key = "test.pinged"
    n: int


def ping(n: int) -> CloudEvent:
    return make_event("test", Pinged(n=n), subject=f"ping/{n}")


@pytest.fixture
async def pool(database_url: str, unique: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"bus_outbox_{unique}"
    pool = await db.create_pool(database_url, schema, max_size=6)
    await db.migrate(pool, schema)
    yield pool
    await pool.close()


@pytest.fixture
async def later() -> AsyncIterator[AsyncExitStack]:
    """Stops what a test started (relays, buses, proxies) even when the test fails."""
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def exchange(unique: str) -> str:
    return f"test.outbox.{unique}"


@pytest.fixture
async def tap(amqp_url: str, exchange: str) -> AsyncIterator[AbstractQueue]:
    """A queue that receives every event on the test's exchange, to count what was published."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(ex, "#")
    yield queue
    await connection.close()
    await delete_topology(amqp_url, exchanges=[exchange])


async def drain(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    messages = []
    while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
        messages.append(message)
    return messages


async def next_message(queue: AbstractQueue, within: float = 5.0) -> AbstractIncomingMessage:
    """The next message on `queue`, waiting for it up to `within` seconds."""
    got: list[AbstractIncomingMessage] = []

    async def arrived() -> bool:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return bool(got)

    await eventually(arrived, within=within)
    return got[0]


async def unsent(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))


async def test_rolled_back_event_is_never_published_and_committed_one_is(
    pool: asyncpg.Pool, amqp_url: str, exchange: str, tap: AbstractQueue, later: AsyncExitStack
) -> None:
    bus = Bus(amqp_url, exchange=exchange, service="test-outbox")
    await bus.connect()
    later.push_async_callback(bus.close)
    rolled_back, committed = ping(1), ping(2)
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with conn.transaction():
                await enqueue(conn, rolled_back)
                raise RuntimeError("changed my mind")
        async with conn.transaction():
            await enqueue(conn, committed)
    relay = OutboxRelay(pool, bus, service="test-outbox")

    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0

    messages = await drain(tap)
    assert [m.message_id for m in messages] == [committed.id]
    message = messages[0]
    assert message.routing_key == "test.pinged"
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert CloudEvent.model_validate_json(message.body) == committed
    assert await unsent(pool) == 0


async def test_enqueue_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await enqueue(conn, ping(1))
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_running_relay_publishes_on_commit_without_waiting_for_its_poll(
    pool: asyncpg.Pool, amqp_url: str, exchange: str, tap: AbstractQueue, later: AsyncExitStack
) -> None:
    bus = Bus(amqp_url, exchange=exchange, service="test-outbox")
    await bus.connect()
    later.push_async_callback(bus.close)
    relay = OutboxRelay(pool, bus, service="test-outbox", poll_seconds=60)
    await relay.start()
    later.push_async_callback(relay.stop)
    await eventually(lambda: relay._listener is not None)  # LISTEN is in place
    event = ping(7)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, event)

    message = await next_message(tap)  # long before the 60 s poll

    assert message.message_id == event.id


async def test_event_committed_during_broker_outage_is_published_once_broker_is_back(
    pool: asyncpg.Pool,
    amqp_url: str,
    exchange: str,
    tap: AbstractQueue,
    caplog: pytest.LogCaptureFixture,
    later: AsyncExitStack,
) -> None:
    proxy = TcpProxy()
    await proxy.open()
    later.push_async_callback(proxy.close)
    bus = Bus(proxy.url(amqp_url), exchange=exchange, service="test-outbox", reconnect_interval=0.1)
    await bus.connect()
    later.push_async_callback(bus.close)
    relay = OutboxRelay(pool, bus, service="test-outbox", poll_seconds=0.05, max_backoff=0.2)
    await relay.start()
    later.push_async_callback(relay.stop)

    await proxy.close()
    await eventually(lambda: not bus.connected)
    event = ping(3)
    with caplog.at_level(logging.WARNING, logger="sage_common.bus.outbox"):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, event)
        await eventually(lambda: "outbox relay pass failed" in caplog.text)  # it tried, and waits
    assert await unsent(pool) == 1

    await proxy.open()
    await eventually(lambda: bus.connected)
    message = await next_message(tap)

    assert message.message_id == event.id
    await eventually(all_sent(pool))
    await relay.stop()
    assert await drain(tap) == []  # published exactly once


def all_sent(pool: asyncpg.Pool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await unsent(pool) == 0

    return check


def published(service: str) -> float:
    return EVENTS_PUBLISHED.labels(service, "test.pinged")._value.get()


async def test_two_relays_at_once_publish_each_row_exactly_once(
    pool: asyncpg.Pool,
    amqp_url: str,
    exchange: str,
    tap: AbstractQueue,
    unique: str,
    later: AsyncExitStack,
) -> None:
    events = [ping(i) for i in range(300)]
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, event)
    buses = [Bus(amqp_url, exchange=exchange, service=f"relay-{side}-{unique}") for side in "ab"]
    relays = [OutboxRelay(pool, bus, service=bus.service, batch=10) for bus in buses]
    for bus in buses:
        await bus.connect()
        later.push_async_callback(bus.close)
    for relay in relays:
        await relay.start()
        later.push_async_callback(relay.stop)

    await eventually(lambda: sum(published(b.service) for b in buses) >= len(events))
    for relay in relays:
        await relay.stop()

    ids = [str(m.message_id) for m in await drain(tap)]
    assert sorted(ids) == sorted(e.id for e in events)  # every row, none twice
    assert all(published(b.service) > 0 for b in buses)  # both relays took a share
    assert sum(published(b.service) for b in buses) == len(events)
    assert await unsent(pool) == 0


async def test_relay_carries_on_after_a_database_outage(
    database_url: str,
    unique: str,
    amqp_url: str,
    exchange: str,
    tap: AbstractQueue,
    caplog: pytest.LogCaptureFixture,
    later: AsyncExitStack,
) -> None:
    proxy = TcpProxy("127.0.0.1", URL(database_url).port or 5432)
    await proxy.open()
    later.push_async_callback(proxy.close)
    schema = f"bus_outbox_dbdown_{unique}"
    pool = await db.create_pool(proxy.url(database_url), schema, max_size=3)
    later.push_async_callback(pool.close)
    await db.migrate(pool, schema)
    bus = Bus(amqp_url, exchange=exchange, service="test-outbox")
    await bus.connect()
    later.push_async_callback(bus.close)
    relay = OutboxRelay(pool, bus, service="test-outbox", poll_seconds=0.05, max_backoff=0.2)
    await relay.start()
    later.push_async_callback(relay.stop)

    with caplog.at_level(logging.WARNING, logger="sage_common.bus.outbox"):
        await proxy.close()  # Postgres restarts
        await eventually(lambda: "outbox relay pass failed" in caplog.text)
    await proxy.open()
    event = ping(21)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, event)

    assert (await next_message(tap)).message_id == event.id
    await eventually(all_sent(pool))
