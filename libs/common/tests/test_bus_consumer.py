"""The idempotent consumer against the real Postgres and RabbitMQ: one effect per event, retries
then a dead-letter queue, redelivery after a crash, and a connection drop survived in place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client import REGISTRY
from yarl import URL

from sage_common import db
from sage_common.bus import Bus, Consumer, Skip
from sage_common.events import CloudEvent, EventData, make_event
from sage_common.logs import request_id
from sage_common.metrics import EVENTS_DEAD, EVENTS_DUPLICATE, EVENTS_FAILED, EVENTS_HANDLED
from tests.support.bus import TcpProxy, delete_topology, eventually

SERVICE = "test-consumer"


class Pinged(EventData):
    routing_key = "test.pinged"
    n: int
    poison: bool = False


def ping(n: int, *, poison: bool = False) -> CloudEvent:
    return make_event("test", Pinged(n=n, poison=poison), subject=f"ping/{n}")


class Recorder(Consumer):
    """Writes one `effects` row per handled event; can fail on poison or block on a gate."""

    def __init__(self, *args: Any, gate: asyncio.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.calls: list[CloudEvent] = []
        self.request_ids: list[str | None] = []
        self.entered = asyncio.Event()

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        self.calls.append(event)
        self.request_ids.append(request_id.get())
        await conn.execute(
            "INSERT INTO effects (consumer, event_id) VALUES ($1, $2)", self.name, event.id
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if event.data["poison"]:
            raise ValueError(f"boom on ping {event.data['n']}")


class SlowBuilder(Consumer):
    """A long-running consumer: slow work outside any transaction, then records its result."""

    def __init__(self, *args: Any, gate: asyncio.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.work: list[str] = []
        self.committed = asyncio.Event()

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        self.work.append(event.id)  # the five-minute build
        async with self.transaction(event) as conn:
            await conn.execute(
                "INSERT INTO effects (consumer, event_id) VALUES ($1, $2)", self.name, event.id
            )
        self.committed.set()
        if self.gate is not None:
            await self.gate.wait()  # dies here: result committed, message not yet acked


@pytest.fixture
async def pool(database_url: str, unique: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"bus_consumer_{unique}"
    pool = await db.create_pool(database_url, schema, max_size=6)
    await db.migrate(pool, schema)
    await pool.execute("CREATE TABLE effects (consumer text NOT NULL, event_id text NOT NULL)")
    yield pool
    await pool.close()


@pytest.fixture
def exchange(unique: str) -> str:
    return f"test.consumer.{unique}"


@pytest.fixture
async def later(amqp_url: str, exchange: str) -> AsyncIterator[AsyncExitStack]:
    """Stops what a test started, even when it fails, then removes the test's exchange."""
    async with AsyncExitStack() as stack:
        stack.push_async_callback(delete_topology, amqp_url, exchanges=[exchange])
        yield stack


@pytest.fixture
async def bus(amqp_url: str, exchange: str, later: AsyncExitStack) -> Bus:
    bus = Bus(amqp_url, exchange=exchange, service=SERVICE)
    await bus.connect()
    later.push_async_callback(bus.close)
    return bus


@pytest.fixture
async def flaky_bus(amqp_url: str, exchange: str, later: AsyncExitStack) -> tuple[TcpProxy, Bus]:
    """A bus reaching the broker through a proxy the test can cut, reconnecting quickly."""
    proxy = TcpProxy()
    await proxy.open()
    later.push_async_callback(proxy.close)
    bus = Bus(proxy.url(amqp_url), exchange=exchange, service=SERVICE, reconnect_interval=0.1)
    await bus.connect()
    later.push_async_callback(bus.close)
    return proxy, bus


@pytest.fixture
async def peek(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    """A plain channel of the test's own, to look into queues."""
    connection = await aio_pika.connect(amqp_url)
    yield await connection.channel()
    await connection.close()


@pytest.fixture
def consumer(
    pool: asyncpg.Pool, bus: Bus, unique: str, later: AsyncExitStack, amqp_url: str
) -> Callable[..., Any]:
    """Build and start a consumer named for this test; it is stopped and its queues removed."""

    async def start(cls: type[Consumer] = Recorder, *, on: Bus | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("name", f"test.consumer.{unique}")
        kwargs.setdefault("routing_keys", ["test.pinged"])
        made = cls(pool, on or bus, **kwargs)
        later.push_async_callback(delete_topology, amqp_url, queues=made.queue_names)
        await made.start()
        later.push_async_callback(made.stop, 0)
        return made

    return start


def count(metric: Any, name: str) -> float:
    return float(metric.labels(SERVICE, name)._value.get())


async def effects(pool: asyncpg.Pool) -> list[str]:
    return [r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects")]


async def effects_count(pool: asyncpg.Pool, n: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) = $1 FROM effects", n))


async def next_message(channel: AbstractChannel, queue: str) -> AbstractIncomingMessage:
    declared = await channel.declare_queue(queue, passive=True)
    got: list[AbstractIncomingMessage] = []

    async def arrived() -> bool:
        if (message := await declared.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        return bool(got)

    await eventually(arrived, within=5)
    return got[0]


async def test_consumer_handles_event_in_its_transaction_under_the_events_request_id(
    consumer: Callable[..., Any], bus: Bus, pool: asyncpg.Pool
) -> None:
    recorder = await consumer()
    event = ping(1).model_copy(update={"requestid": "req-abc-123"})

    await bus.publish(event)

    await eventually(lambda: count(EVENTS_HANDLED, recorder.name) == 1)
    assert await effects(pool) == [event.id]
    recorded = await pool.fetch("SELECT consumer, event_id::text FROM processed_events")
    assert [tuple(r) for r in recorded] == [(recorder.name, event.id)]
    assert recorder.request_ids == ["req-abc-123"]
    lag = REGISTRY.get_sample_value(
        "sage_event_lag_seconds_count", {"service": SERVICE, "consumer": recorder.name}
    )
    assert lag == 1


async def test_duplicate_delivery_of_an_event_has_one_effect(
    consumer: Callable[..., Any], bus: Bus, pool: asyncpg.Pool
) -> None:
    recorder = await consumer()
    event = ping(2)

    await bus.publish(event)
    await bus.publish(event)

    name = recorder.name
    await eventually(lambda: count(EVENTS_HANDLED, name) + count(EVENTS_DUPLICATE, name) == 2)
    assert count(EVENTS_HANDLED, name) == 1
    assert count(EVENTS_DUPLICATE, name) == 1
    assert await effects(pool) == [event.id]


async def test_poison_message_is_dead_lettered_with_its_error_and_does_not_block_the_next(
    consumer: Callable[..., Any], bus: Bus, pool: asyncpg.Pool, peek: AbstractChannel
) -> None:
    recorder = await consumer(retry_delays=(0.05, 0.1))
    poison, good = ping(3, poison=True), ping(4)

    await bus.publish(poison)
    await bus.publish(good)

    dead = await next_message(peek, recorder.dlq_name)
    assert dead.message_id == poison.id
    assert CloudEvent.model_validate_json(dead.body) == poison
    headers = dead.headers
    assert "ValueError: boom on ping 3" in str(headers["x-error"])
    assert headers["x-attempts"] == 3
    assert headers["x-routing-key"] == "test.pinged"
    assert headers["x-consumer"] == recorder.name
    assert str(headers["x-first-failure"]) <= str(headers["x-last-failure"])
    assert [e.id for e in recorder.calls].count(poison.id) == 3  # first try + two retries
    assert good.id in [e.id for e in recorder.calls]
    assert await effects(pool) == [good.id]  # the poison's effect rolled back every time
    assert count(EVENTS_FAILED, recorder.name) == 3
    # Counted once the broker confirms the copy and the original is acked: just after it shows.
    await eventually(lambda: count(EVENTS_DEAD, recorder.name) == 1)


async def test_unparseable_message_goes_to_the_dead_letter_queue_at_once(
    consumer: Callable[..., Any], bus: Bus, peek: AbstractChannel, pool: asyncpg.Pool
) -> None:
    recorder = await consumer(retry_delays=(5.0,))
    not_uuid = ping(5).model_copy(update={"id": "not-a-uuid"})

    await bus.publish_raw("test.pinged", b"{this is not json", message_id="junk-1")
    await bus.publish(not_uuid)
    await bus.publish(good := ping(6))

    first = await next_message(peek, recorder.dlq_name)
    second = await next_message(peek, recorder.dlq_name)
    assert [first.message_id, second.message_id] == ["junk-1", "not-a-uuid"]
    for dead in (first, second):
        assert str(dead.headers["x-error"]).startswith("unparseable envelope")
        assert dead.headers["x-attempts"] == 1
    assert first.body == b"{this is not json"
    await eventually(lambda: count(EVENTS_HANDLED, recorder.name) == 1)
    assert [e.id for e in recorder.calls] == [good.id]


async def test_consumer_killed_mid_handling_gets_the_message_again_and_it_takes_effect_once(
    consumer: Callable[..., Any], bus: Bus, pool: asyncpg.Pool
) -> None:
    dying = await consumer(gate=asyncio.Event())  # never opens
    event = ping(7)
    await bus.publish(event)
    await asyncio.wait_for(dying.entered.wait(), 5)  # its effect is written, not committed

    await dying.stop(grace=0)  # the process dies: handler cancelled, nothing acked
    assert await effects(pool) == []

    survivor = await consumer()
    await eventually(lambda: len(survivor.calls) == 1)
    await eventually(lambda: count(EVENTS_HANDLED, survivor.name) == 1)
    assert survivor.calls[0].id == event.id
    assert await effects(pool) == [event.id]


async def test_connection_lost_after_commit_before_ack_redelivers_and_records_once(
    consumer: Callable[..., Any],
    pool: asyncpg.Pool,
    flaky_bus: tuple[TcpProxy, Bus],
) -> None:
    proxy, flaky = flaky_bus
    builder = await consumer(SlowBuilder, on=flaky, gate=asyncio.Event())
    event = ping(8)
    await flaky.publish(event)
    await asyncio.wait_for(builder.committed.wait(), 5)

    await proxy.drop()  # its channel goes before the ack

    await eventually(lambda: count(EVENTS_DUPLICATE, builder.name) == 1)
    assert builder.work == [event.id]  # the redelivery skipped the slow work
    assert await effects(pool) == [event.id]


async def test_connection_drop_is_survived_by_the_same_bus_and_consumer(
    consumer: Callable[..., Any],
    pool: asyncpg.Pool,
    flaky_bus: tuple[TcpProxy, Bus],
) -> None:
    proxy, flaky = flaky_bus
    recorder = await consumer(on=flaky)
    await flaky.publish(before := ping(9))
    await eventually(lambda: len(recorder.calls) == 1)

    await proxy.close()  # the broker is unreachable: connections cut, new ones refused
    await eventually(lambda: not flaky.connected)
    during = ping(10)
    publishing = asyncio.create_task(flaky.publish(during, timeout=10))
    await asyncio.sleep(0.3)
    assert not publishing.done()  # it waits for the broker instead of failing or dropping
    await proxy.open()
    await publishing
    await proxy.drop()  # and a blip, with a publish right behind it
    await flaky.publish(after := ping(11))

    await eventually(lambda: effects_count(pool, 3))
    assert sorted(await effects(pool)) == sorted([before.id, during.id, after.id])


async def test_database_outage_keeps_events_waiting_instead_of_dead_lettering_them(
    database_url: str,
    unique: str,
    bus: Bus,
    later: AsyncExitStack,
    amqp_url: str,
    peek: AbstractChannel,
) -> None:
    proxy = TcpProxy("127.0.0.1", URL(database_url).port or 5432)
    await proxy.open()
    later.push_async_callback(proxy.close)
    schema = f"bus_dbdown_{unique}"
    pool = await db.create_pool(proxy.url(database_url), schema, max_size=3)
    later.push_async_callback(pool.close)
    await db.migrate(pool, schema)
    await pool.execute("CREATE TABLE effects (consumer text NOT NULL, event_id text NOT NULL)")
    recorder = Recorder(
        pool,
        bus,
        name=f"test.dbdown.{unique}",
        routing_keys=["test.pinged"],
        retry_delays=(0.05,),
        transient_pause=0.05,
    )
    later.push_async_callback(delete_topology, amqp_url, queues=recorder.queue_names)
    await recorder.start()
    later.push_async_callback(recorder.stop, 0)

    await proxy.close()  # Postgres is unreachable
    await bus.publish(event := ping(12))
    # Far more failed attempts than its one retry allows: none of them counted against it.
    await eventually(lambda: count(EVENTS_FAILED, recorder.name) >= 5)
    dlq = await peek.declare_queue(recorder.dlq_name, passive=True)
    assert dlq.declaration_result.message_count == 0

    await proxy.open()
    await eventually(lambda: count(EVENTS_HANDLED, recorder.name) == 1)
    assert [r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects")] == [event.id]
    assert count(EVENTS_DEAD, recorder.name) == 0


async def _old_style_queue(peek: AbstractChannel, name: str) -> Any:
    """The consumer's queue as releases before the requeue exchange declared it."""
    return await peek.declare_queue(
        name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dlq"},
    )


async def test_an_empty_queue_of_an_older_release_is_replaced_at_start(
    consumer: Callable[..., Any], bus: Bus, pool: asyncpg.Pool, peek: AbstractChannel, unique: str
) -> None:
    await _old_style_queue(peek, f"test.consumer.{unique}")
    recorder = await consumer(retry_delays=(0.05,))
    await bus.publish(ping(1, poison=True))
    await bus.publish(ping(2))
    await eventually(lambda: count(EVENTS_HANDLED, recorder.name) == 1)
    dead = await next_message(peek, recorder.dlq_name)  # dead-lettered the new way
    assert dead.headers["x-error"]


async def test_a_retry_queue_of_an_older_release_holding_messages_stops_the_start(
    consumer: Callable[..., Any], peek: AbstractChannel, unique: str, amqp_url: str,
    later: AsyncExitStack,
) -> None:  # fmt: skip
    # The main queue is migrated with its messages (bus/queues.py); a retry queue is not.
    name = f"test.consumer.{unique}"
    retry = f"{name}.retry.50ms"
    later.push_async_callback(delete_topology, amqp_url, queues=[name, retry, f"{name}.dlq"])
    # Old shape (dead-lettering through the default exchange); no TTL, so the message stays.
    await peek.declare_queue(
        retry,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name},
    )
    await peek.default_exchange.publish(aio_pika.Message(b"waiting"), retry)
    with pytest.raises(RuntimeError, match="holds messages"):
        await consumer(retry_delays=(0.05,))
    kept = await peek.declare_queue(retry, passive=True)
    assert kept.declaration_result.message_count == 1
