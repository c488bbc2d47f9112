"""Poison messages are bounded by the broker: a message whose delivery kills the consumer
process every time lands in the dead-letter queue after the delivery limit, and the queue moves
on; a classic queue left by an earlier version is migrated to a quorum queue with its messages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import aio_pika
import asyncpg

from sage_common import db
from sage_common.bus import Bus, queue_names
from sage_common.bus.consumer import requeue_exchange_name
from sage_common.bus.queues import main_queue_arguments
from sage_common.events import EventData, make_event
from tests.support.bus import delete_topology, eventually

from .test_bus_consumer import Recorder

HELPER = Path(__file__).parent / "helpers" / "dying_consumer.py"
LIMIT = 2


class Pinged(EventData):
    routing_key = "test.pinged"
    n: int
    poison: bool = False


async def message_count(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def run_until_exit(args: list[str], within: float = 60.0) -> int:
    """Start the dying consumer; return its exit status once it exits (or stop it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HELPER), *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        return await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -9


async def test_message_that_kills_its_consumer_every_time_ends_in_the_dead_letter_queue(
    database_url: str, amqp_url: str, unique: str
) -> None:
    exchange, queue, schema = f"test.poison.{unique}", f"test.poison.{unique}", f"poison_{unique}"
    args = [database_url, schema, amqp_url, exchange, queue, str(LIMIT)]
    async with AsyncExitStack() as later:
        later.push_async_callback(
            delete_topology, amqp_url, exchanges=[exchange], queues=queue_names(queue)
        )
        bus = Bus(amqp_url, exchange=exchange, service="poison-test")
        await bus.connect()
        later.push_async_callback(bus.close)
        # The first run declares the queues, then meets the poison and dies; each later run dies
        # on its redelivery, until the broker dead-letters it.
        starting = asyncio.create_task(run_until_exit(args))
        await eventually(lambda: consuming(amqp_url, queue), within=30)
        poison, healthy = (
            make_event("test", Pinged(n=1, poison=True)),
            make_event("test", Pinged(n=2)),
        )
        await bus.publish(poison)
        deaths = [await starting]

        async def settled() -> bool:
            # After a death the broker either makes the message ready again or, past the limit,
            # dead-letters it (asynchronously, at least once): wait for one before going on.
            dlq = await message_count(amqp_url, f"{queue}.dlq")
            return dlq > 0 or await message_count(amqp_url, queue) > 0

        while len(deaths) <= LIMIT + 1:
            await eventually(settled, within=30)
            if await message_count(amqp_url, f"{queue}.dlq") > 0:
                break
            deaths.append(await run_until_exit(args))
        assert set(deaths) == {3}  # each run was killed by the poison message
        assert len(deaths) == LIMIT + 1  # the first delivery and LIMIT redeliveries

        # The next run is not stopped by it: the queue moves on.
        survivor = await asyncio.create_subprocess_exec(
            sys.executable, str(HELPER), *args, stdout=subprocess.PIPE
        )
        try:
            await bus.publish(healthy)
            pool = await db.create_pool(database_url, schema, max_size=1)
            later.push_async_callback(pool.close)
            await eventually(lambda: handled(pool, healthy.id), within=30)
        finally:
            survivor.kill()
            await survivor.wait()
        dead = await dead_letters(amqp_url, f"{queue}.dlq")
        assert dead == [poison.id]


async def consuming(amqp_url: str, queue: str) -> bool:
    """Whether a consumer reads `queue`: only then is it bound (it is declared before that)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return bool(declared.declaration_result.consumer_count)


async def handled(pool: asyncpg.Pool, event_id: str) -> bool:
    try:
        return bool(await pool.fetchval("SELECT count(*) FROM effects WHERE event_id=$1", event_id))
    except asyncpg.UndefinedTableError:
        return False


async def dead_letters(amqp_url: str, dlq: str) -> list[str]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(dlq, passive=True)
        ids = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            ids.append(str(message.message_id))
        return ids


async def test_classic_queue_of_an_earlier_version_is_migrated_with_its_messages(
    database_url: str, amqp_url: str, unique: str
) -> None:
    exchange, queue = f"test.migrate.{unique}", f"test.migrate.{unique}"
    schema = f"migrate_{unique}"
    events = [make_event("test", Pinged(n=n)) for n in range(3)]
    async with AsyncExitStack() as later:
        later.push_async_callback(
            delete_topology, amqp_url, exchanges=[exchange], queues=queue_names(queue, (0.05,))
        )
        # What an earlier version declared: a classic queue, bound, with messages waiting.
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            old = await channel.declare_queue(
                queue,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": f"{queue}.dlq",
                },
            )
            await old.bind(ex, "test.pinged")
        bus = Bus(amqp_url, exchange=exchange, service="migrate-test")
        await bus.connect()
        later.push_async_callback(bus.close)
        for event in events:
            await bus.publish(event)
        pool = await db.create_pool(database_url, schema, max_size=3)
        later.push_async_callback(pool.close)
        await db.migrate(pool, schema)
        await pool.execute("CREATE TABLE effects (consumer text NOT NULL, event_id text NOT NULL)")
        recorder = Recorder(
            pool, bus, name=queue, routing_keys=["test.pinged"], retry_delays=(0.05,)
        )
        await recorder.start()
        later.push_async_callback(recorder.stop, 0)
        after = make_event("test", Pinged(n=9))
        await bus.publish(after)

        async def all_handled() -> bool:
            return bool(await pool.fetchval("SELECT count(*) = 4 FROM effects"))

        await eventually(all_handled, within=20)
        ids = sorted(r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects"))
        assert ids == sorted(e.id for e in [*events, after])
        # The queue is now a quorum queue: redeclaring it with the new arguments is accepted.
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(
                queue,
                durable=True,
                arguments=main_queue_arguments(
                    f"{queue}.dlq", recorder.delivery_limit, requeue_exchange_name(queue)
                ),
            )
            holding = await connection.channel()
            try:
                await holding.declare_queue(f"{queue}.migrate", passive=True)
                leftover = True
            except aio_pika.exceptions.ChannelNotFoundEntity:
                leftover = False
        assert not leftover  # the holding queue is gone
